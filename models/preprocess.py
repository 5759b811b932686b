"""CLIP image preprocessing in Pillow + numpy, equal to the reference CLIPImageProcessor.

Resize the shortest side to ``size`` with bicubic resampling, centre-crop ``size`` x ``size``
(top-left rounding down, as transformers does), scale to [0, 1] and normalise with CLIP's
mean and std. Images arrive already upright and RGB (models.images.open_image).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


def resize_shortest_side(image: "Image", size: int) -> "Image":
    from PIL import Image

    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, Image.Resampling.BICUBIC)


def centre_crop(pixels: "np.ndarray", size: int) -> "np.ndarray":
    """Crop (H, W, C) to (size, size, C); pads with zeros when the image is smaller."""
    import numpy as np

    height, width = pixels.shape[:2]
    if height < size or width < size:
        padded = np.zeros((max(height, size), max(width, size), pixels.shape[2]), pixels.dtype)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top:top + height, left:left + width] = pixels
        pixels, height, width = padded, padded.shape[0], padded.shape[1]
    top, left = (height - size) // 2, (width - size) // 2
    return pixels[top:top + size, left:left + size]


def preprocess(images: Sequence["Image"], size: int, mean: Sequence[float], std: Sequence[float]) -> "np.ndarray":
    """(n, 3, size, size) float32 pixel values for the image tower."""
    import numpy as np

    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        batch[i] = centre_crop(np.asarray(resize_shortest_side(image.convert("RGB"), size)), size)
    scale = np.float32(1 / 255)
    pixels = (batch.astype(np.float32) * scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
