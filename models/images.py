"""Opening untrusted image bytes: every failure becomes an ImageError naming the image.

What people's collections contain: truncated files, zero bytes, things that are not images,
decompression bombs, CMYK, 16-bit, palette and alpha images, animations, EXIF rotation. Each
is either turned into a correct RGB image or refused with a reason, and the size is checked
from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from columnist.errors import BadInput
from columnist.printable import printable
from columnist.records import ImageLimits

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

DEFAULT_MAX_PIXELS = ImageLimits().max_pixels
MAX_JPEG_SCANS = 100
"""A progressive JPEG has about 10 scans; thousands of empty ones keep the decoder busy for minutes."""
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")  # JPEG covers MPO (multi-picture JPEGs)
JPEG_FORMATS = ("JPEG", "MPO")
"""What Pillow calls a JPEG it opened: a phone photo with a gain map is an MPO."""
"""The formats photo collections hold; Pillow is told to try no other. Some of its other
plugins decode pixels inside ``Image.open`` (an ICO holding a 13000x13000 PNG, whatever its
file name says), before any size check could refuse them."""


class ImageError(BadInput, ValueError):
    """An image that cannot be used; ``reason`` is for people, ``name`` says which image."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{printable(name, 300)}: {reason}")


@dataclass(frozen=True)
class Decoded:
    image: "Image"
    """Upright RGB; smaller than the file's pixels when decoded at a reduced size."""
    width: int
    height: int
    """The image's full size (upright), whatever size it was decoded at."""


def open_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> "Image":
    """Decode ``data`` into an upright RGB image (first frame of an animation), full size."""
    return decode(data, name, max_pixels).image


def decode(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int = 0) -> Decoded:
    """Decode ``data`` into an upright RGB image. With ``at_least``, a JPEG is decoded at the
    smallest of its DCT scales (1/2, 1/4, 1/8) that keeps both sides at ``at_least`` pixels
    or more: a 12-megapixel photo for a 224-pixel model decodes about 6x faster, in an
    eighth of the memory, and the final 224-pixel input differs by a fraction of a level."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(data)
    except UnidentifiedImageError:
        raise ImageError(name, f"not an image columnist reads (it reads {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as err:
        raise ImageError(name, f"refused before decoding: {err}") from None
    except Exception as err:  # a fuzzed file can make Pillow raise anything (TypeError, struct.error, ...)
        raise ImageError(name, f"cannot decode image header: {_describe(err)}") from None
    width, height = image.size
    scans = data.count(b"\xff\xda") if image.format in JPEG_FORMATS else 0  # SOS markers: never inside scan data
    if scans > MAX_JPEG_SCANS:
        raise ImageError(name, f"refused before decoding: a JPEG with {scans:,} scans (at most {MAX_JPEG_SCANS})")
    if width <= 0 or height <= 0:
        raise ImageError(name, f"has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            name, f"refused before decoding: {width}x{height} is {width * height:,} pixels, "
            f"over the limit of {max_pixels:,}"
        )
    try:
        image.seek(0)
        if at_least and image.format in JPEG_FORMATS:
            image.draft("RGB", (at_least, at_least))
        image.load()
        before = image.size
        ImageOps.exif_transpose(image, in_place=True)  # a copy would double the peak of a large image
    except Exception as err:
        raise ImageError(name, f"cannot decode {image.format or 'image'}: {_describe(err)}") from None
    if image.size != before:  # turned a quarter: so is the full size
        width, height = height, width
    try:
        return Decoded(to_rgb(image), width, height)
    except Exception as err:
        raise ImageError(name, f"cannot convert {image.format or 'image'} mode {image.mode} to RGB: "
                               f"{_describe(err)}") from None


def decoded_pixels(data: bytes, at_least: int = 0) -> int:
    """How many pixels ``decode(data, at_least=...)`` will decode, from the header alone
    (UNKNOWN_PIXELS when the header cannot be read: decode then says why)."""

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = _open(data)
            if at_least and image.format in JPEG_FORMATS:
                image.draft("RGB", (at_least, at_least))
            return image.size[0] * image.size[1]
    except Exception:  # noqa: BLE001 - a bad header is decode's to report
        return UNKNOWN_PIXELS


def _open(data: bytes) -> "Image":
    from PIL import Image

    Image.init()  # registers every plugin once, so that the allowed ones (MPO, WEBP, ...) are known
    return Image.open(io.BytesIO(data), formats=FORMATS)


UNKNOWN_PIXELS = 2**62
"""What decoded_pixels says of a header it cannot read: as large as can be (decode refuses it)."""


def _describe(err: Exception) -> str:
    """Pillow's own errors speak for themselves; anything else also says what it was."""
    message = str(err)[:300]
    if isinstance(err, (OSError, SyntaxError, ValueError, EOFError)) and message:
        return message
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def to_rgb(image: "Image") -> "Image":
    """RGB as CLIP expects; 16-bit greyscale is scaled down rather than clipped to white."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES or image.mode == "F":
        return Image.fromarray(_to_eight_bits(image, 1.0 if image.mode == "F" else 257.0), mode="L").convert("RGB")
    if image.mode == "RGB":
        return image
    if image.mode == "P":  # palette transparency is only honoured through RGBA
        image = image.convert("RGBA")
    return image.convert("RGB")


def _to_eight_bits(image: "Image", divisor: float) -> "np.ndarray":
    """8-bit levels of a 16-bit, 32-bit or float greyscale image, a band of rows at a time
    (a whole-image float copy of a 60-megapixel scan would take gigabytes)."""
    import numpy as np

    source = np.asarray(image)
    levels = np.empty(source.shape, np.uint8)
    for start in range(0, source.shape[0], 256):
        band = source[start:start + 256].astype(np.float32)
        band /= divisor
        np.clip(band, 0, 255, out=band)
        levels[start:start + 256] = np.rint(band)
    return levels
