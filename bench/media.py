"""Media made on this machine from the real sample photos (tests/data/photos), for the
benchmarks and the tests alike: what cameras and phones write, at their sizes."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "data" / "photos"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def camera_jpeg(orientation: int | None = None, photo: str = "astronaut.jpg") -> bytes:
    """A 4000x3000 JPEG (q90) made from a real photo: what a 12-megapixel camera writes."""
    image = Image.open(PHOTOS / photo).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    if orientation is None:
        return encode(image, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())
