"""Camera RAW files (DNG, CR2/CR3, NEF, ARW, ORF, RW2, RAF, ...) through LibRaw (rawpy).

A camera writes a full-size (or large) JPEG preview into its RAW file: that is what people
see of the photo, and decoding it costs what a JPEG does. It is used when it is at least as
large as the model needs; otherwise the sensor data is developed at half size (each 2x2
block of the colour filter one pixel, no demosaicing: ~120 ms at 12 MP). The sensor's size is
read, and checked against the pixel limit, before anything is unpacked.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from columnist.models.images import Decoded

_ROTATIONS = {3: 180, 5: 90, 6: 270}
"""LibRaw's flip values -> degrees counter-clockwise (PIL's rotate)."""


def decode_raw(data: bytes, name: str, max_pixels: int, at_least: int = 0) -> "Decoded":
    import rawpy
    from PIL import Image

    from columnist.models.images import Decoded, ImageError, _describe, to_rgb

    try:
        raw = rawpy.imread(io.BytesIO(data))
    except Exception as err:  # LibRaw's own classes: unsupported, I/O, data errors
        raise ImageError(name, f"cannot read the camera RAW file: {_describe(err)}") from None
    with raw:
        sizes = raw.sizes
        if sizes.raw_width * sizes.raw_height > max_pixels or sizes.width * sizes.height > max_pixels:
            raise ImageError(name, f"refused before decoding: a {sizes.raw_width}x{sizes.raw_height} sensor is "
                                   f"{sizes.raw_width * sizes.raw_height:,} pixels, over the limit of {max_pixels:,}")
        turned = sizes.flip in (5, 6)
        width, height = (sizes.height, sizes.width) if turned else (sizes.width, sizes.height)
        image = _preview(raw, name, max_pixels, at_least)
        if image is None:
            try:
                image = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
            except Exception as err:
                raise ImageError(name, f"cannot develop the camera RAW data: {_describe(err)}") from None
            return Decoded(to_rgb(image), width, height)  # postprocess turned it upright already
    if sizes.flip in _ROTATIONS:
        image = image.rotate(_ROTATIONS[sizes.flip], expand=True)
    return Decoded(to_rgb(image), width, height)


def _preview(raw, name: str, max_pixels: int, at_least: int):
    """The embedded preview as an image, when there is one at least STAND_IN_MARGIN times
    ``at_least`` (the model's side) on its short side; else None."""
    import numpy as np
    import rawpy
    from PIL import Image

    from columnist.models.images import STAND_IN_MARGIN, ImageError, decode

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except Exception as err:
        raise ImageError(name, f"cannot read the camera RAW file's preview: {err}") from None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        preview = decode(bytes(thumb.data), f"{name} (embedded preview)", max_pixels, at_least=at_least)
        image = preview.image
        full = (preview.width, preview.height)
    else:
        image = Image.fromarray(np.asarray(thumb.data, dtype=np.uint8))
        full = image.size
    return image if min(full) >= STAND_IN_MARGIN * at_least else None
