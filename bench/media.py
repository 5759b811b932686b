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


def photo(name: str = "astronaut.jpg", size: tuple[int, int] | None = None) -> Image.Image:
    image = Image.open(PHOTOS / name).convert("RGB")
    return image.resize(size, Image.Resampling.BICUBIC) if size else image


def heic(image: Image.Image, quality: int = 85, **options) -> bytes:
    """HEIC as phones write it (pillow-heif's x265 encoder; the ultrafast preset keeps tests quick)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(image, "HEIF", quality=quality, enc_params={"preset": "ultrafast"}, **options)


def avif(image: Image.Image, quality: int = 80) -> bytes:
    return encode(image, "AVIF", quality=quality, speed=8)


def jxl(image: Image.Image, quality: int = 90) -> bytes:
    import pillow_jxl  # noqa: F401 - registers the plugin

    return encode(image, "JXL", quality=quality, effort=3)


def dng(image: Image.Image, preview_side: int | None = 1600) -> bytes:
    """A camera RAW without a camera: a DNG (TIFF) whose first image is a JPEG preview of
    ``preview_side`` pixels on its long side (None: no preview) and whose sub-image is the
    12-bit RGGB sensor data sampled from ``image``."""
    import numpy as np
    import tifffile

    pixels = np.asarray(image.convert("RGB"), dtype=np.uint16) * 16  # 8-bit levels in a 12-bit range
    height, width = (s - s % 2 for s in pixels.shape[:2])
    pixels = pixels[:height, :width]
    sensor = np.empty((height, width), np.uint16)
    sensor[0::2, 0::2], sensor[0::2, 1::2] = pixels[0::2, 0::2, 0], pixels[0::2, 1::2, 1]
    sensor[1::2, 0::2], sensor[1::2, 1::2] = pixels[1::2, 0::2, 1], pixels[1::2, 1::2, 2]
    camera = [(271, "s", 0, "Synthetic", True), (272, "s", 0, "TestCam", True), (50706, "B", 4, (1, 4, 0, 0), True),
              (50707, "B", 4, (1, 1, 0, 0), True), (50708, "s", 0, "Synthetic TestCam", True),
              (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
              (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True), (50778, "H", 1, 21, True)]
    cfa = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50714, "H", 1, 0, True),
           (50717, "H", 1, 4095, True)]
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        if preview_side:
            small = image.convert("RGB")
            small.thumbnail((preview_side, preview_side))
            jpeg = encode(small, "JPEG", quality=90)
            tif.write(iter([jpeg]), shape=(small.height, small.width, 3), dtype=np.uint8, photometric="ycbcr",
                      compression="jpeg", rowsperstrip=small.height, subsampling=(2, 2), subfiletype=1, subifds=1,
                      extratags=camera, metadata=None)
            tif.write(sensor, photometric=32803, subfiletype=0, extratags=cfa, metadata=None)
        else:
            tif.write(sensor, photometric=32803, subfiletype=0, extratags=camera + cfa, metadata=None)
    return buffer.getvalue()


SCENES = ((0.0, (200, 30, 30)), (1.5, (30, 30, 200)), (3.0, (30, 180, 40)), (4.5, (220, 200, 40)))
"""Scene start times (seconds) and colours of ``video``'s default film."""


def video(path: Path, scenes=SCENES, seconds: float = 6.0, fps: int = 10, size: tuple[int, int] = (320, 240),
          codec: str = "libx264", pix_fmt: str = "yuv420p", **options) -> Path:
    """A film of solid-coloured scenes starting at known times (a little motion inside each),
    H.264 in MP4 with its index first, a keyframe every second."""
    import av
    import numpy as np

    width, height = size
    with av.open(str(path), "w", container_options={"movflags": "+faststart"}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = fps
        stream.options = {"preset": "ultrafast", **options} if codec == "libx264" else dict(options)
        for index in range(int(seconds * fps)):
            t = index / fps
            colour = [c for start, c in scenes if start <= t + 1e-9][-1]
            frame = np.empty((height, width, 3), np.uint8)
            frame[:] = colour
            side = max(2, width // 16)  # a little square moving across: motion, not a scene change
            left = (index * max(1, side // 5)) % (width - side)
            frame[height // 3: height // 3 + side, left:left + side] = 255
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = index
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
