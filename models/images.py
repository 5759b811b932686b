"""Opening untrusted image bytes: every failure becomes an ImageError naming the image.

What people's collections contain: JPEG (and phones' MPO), PNG, GIF, BMP, TIFF, WebP, HEIC,
AVIF, JPEG XL and camera RAW (models.raw); truncated files, zero bytes, things that are not
images, decompression bombs, CMYK, 16-bit, palette and alpha images, animations, EXIF
rotation. Each is either turned into a correct RGB image or refused with a reason, and the
size is checked from the header before any pixel is decoded (for JPEG XL, whose Pillow plugin
decodes inside ``Image.open``, by columnist's own header reader, models.jxl). JPEG and HEIC
are decoded at the size the model needs where they can be (JPEG's DCT scaling, HEIC's
embedded thumbnails when large enough).
"""

from __future__ import annotations

import io
import re
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
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF", "JXL")  # JPEG covers MPO (multi-picture JPEGs)
"""The formats photo collections hold; Pillow is told to try no other. Some of its other
plugins decode pixels inside ``Image.open`` (an ICO holding a 13000x13000 PNG, whatever its
file name says), before any size check could refuse them."""
JPEG_FORMATS = ("JPEG", "MPO")
"""What Pillow calls a JPEG it opened: a phone photo with a gain map is an MPO."""
READS = "JPEG, PNG, GIF, BMP, TIFF, WebP, HEIC, AVIF, JPEG XL, camera RAW and video"
DRAFT_FORMATS = (*JPEG_FORMATS, "HEIF")
"""Formats Pillow can decode at a smaller size (JPEG: DCT scaling; HEIC: an embedded thumbnail
at least as large as asked for)."""
STAND_IN_MARGIN = 2
"""An embedded thumbnail or preview (HEIC, camera RAW) stands in for a picture only when its
short side is at least this many times the model's: it is another, more compressed picture.
JPEG's DCT scaling needs no margin: it averages the picture's own 8x8 blocks (12-megapixel
photos decoded to at least 224 px against whole: embedding cosine >= 0.99999, 5 ms less of
CPU each than to at least 448 px)."""


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


def decode(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int = 0,
           kind: str | None = None) -> Decoded:
    """Decode ``data`` into an upright RGB image. With ``at_least`` (the side the model sees), a
    JPEG is decoded at the smallest of its DCT scales (1/2, 1/4, 1/8) that keeps both sides at
    ``at_least`` pixels or more: a 12-megapixel photo for a 224-pixel model decodes about 9x
    faster, in a 64th of the memory, and the final 224-pixel input differs by a fraction of a
    level. A HEIC's thumbnail or a RAW's preview is used from STAND_IN_MARGIN times that."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from columnist.models import media

    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    kind = kind or media.kind_of(data)
    if kind == media.RAW:
        from columnist.models.raw import decode_raw

        return decode_raw(data, name, max_pixels, at_least)
    if kind == media.VIDEO:
        raise ImageError(name, "a video, not a still image")
    _check_declared_size(data, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(data, max_pixels)
    except UnidentifiedImageError:
        raise ImageError(name, f"not an image columnist reads (it reads {READS})") from None
    except Image.DecompressionBombError as err:
        declared = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(declared.group(1)):,} pixels" if declared else "its size"
        raise ImageError(name, f"refused before decoding: {size}, over the limit of {max_pixels:,}") from None
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
        _draft(image, at_least)
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


def _draft(image: "Image", at_least: int) -> None:
    """Ask Pillow to decode ``image`` at the smallest size its format allows for ``at_least``."""
    if at_least and image.format in DRAFT_FORMATS:
        side = at_least if image.format in JPEG_FORMATS else STAND_IN_MARGIN * at_least
        image.draft("RGB", (side, side))


def decoded_pixels(data: bytes, at_least: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """How many pixels ``decode(data, at_least=...)`` will decode, from the header alone
    (UNKNOWN_PIXELS when the header cannot be read: decode then says why)."""

    from columnist.models import jxl, media

    try:
        if media.kind_of(data) != media.IMAGE:
            return UNKNOWN_PIXELS  # RAW and video decode one at a time
        if jxl.is_jxl(data):
            width, height = jxl.declared_size(data)  # Pillow's plugin would decode it to say
            return width * height
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = _open(data, max_pixels)
            _draft(image, at_least)
            return image.size[0] * image.size[1]
    except Exception:  # noqa: BLE001 - a bad header is decode's to report
        return UNKNOWN_PIXELS


def _check_declared_size(data: bytes, name: str, max_pixels: int) -> None:
    """JPEG XL: the size its header declares, before Pillow's plugin decodes it whole."""
    from columnist.models import jxl

    if not jxl.is_jxl(data):
        return
    try:
        width, height = jxl.declared_size(data)
    except ValueError as err:
        raise ImageError(name, f"cannot read the JPEG XL header: {err}") from None
    if width * height > max_pixels:
        raise ImageError(name, f"refused before decoding: {width}x{height} is {width * height:,} pixels, over the "
                               f"limit of {max_pixels:,}")


_PLUGINS = []


def _open(data: bytes, max_pixels: int) -> "Image":
    """Pillow's open, which refuses an image of more than twice MAX_IMAGE_PIXELS (a plugin may
    decode inside it): that limit is COLUMNIST_MAX_IMAGE_PIXELS, the same in every thread."""
    from PIL import Image

    if not _PLUGINS:
        _register_plugins()
        _PLUGINS.append(True)
    Image.MAX_IMAGE_PIXELS = max_pixels
    return Image.open(io.BytesIO(data), formats=FORMATS)


def _register_plugins() -> None:
    """Pillow's own plugins (MPO, WEBP, AVIF, ...), HEIC through pillow-heif (its security
    limits on, embedded thumbnails read for draft decoding, no depth or auxiliary images) and
    JPEG XL through pillow-jxl-plugin."""
    import pillow_heif
    import pillow_jxl  # noqa: F401 - registers the JXL plugin
    from PIL import Image

    pillow_heif.register_heif_opener(thumbnails=True, depth_images=False, aux_images=False)
    Image.init()


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
