"""The mock encoder: deterministic hash-based vectors, no model files.

It stands in for CLIP wherever the model's opinion does not matter (thresholds, storage,
replay, the stream). Equal inputs give equal vectors on every machine; different inputs
give unrelated vectors. Every vector shares one fixed component, so image-text cosines sit
around 0.25 (logits around 25, like CLIP's on photos) and scores spread across every tier
instead of all being near zero. Its scores mean nothing.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


class MockEncoder:
    source = "mock"
    runtime = "numpy"
    choice = None  # nothing to measure
    calibration = None  # no learned bias: the vocabulary's calibration
    reads_language = False
    shared_prompts_key = None  # its texts cost nothing to encode

    def __init__(self, dim: int = 512, logit_scale: float = 100.0):
        self.name = self.ref = "mock"
        self.dim = dim
        self.image_size = 224
        self.logit_scale = logit_scale

    def open_image_tower(self) -> None:
        """Nothing to open."""

    def open_image_tower_soon(self) -> None:
        """Nothing to open."""

    def warm_up(self) -> None:
        """Nothing to warm."""

    SHARED_WEIGHT = 0.45  # image-text cosines ~ 0.2-0.26 (one template or an ensemble)

    def _vector(self, payload: bytes) -> "np.ndarray":
        import numpy as np

        seed = int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")
        noise = np.random.default_rng(seed).standard_normal(self.dim)
        shared = np.zeros(self.dim)
        shared[0] = 1.0
        w = self.SHARED_WEIGHT
        vector = w * shared + np.sqrt(1 - w * w) * noise / np.linalg.norm(noise)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def prepare_image(self, image: "Image") -> "np.ndarray":
        """The mock's whole encoding happens here: a vector from the decoded pixels."""
        return self._vector(b"image:" + image.convert("RGB").tobytes())

    def encode_prepared(self, prepared: Sequence["np.ndarray"]) -> "np.ndarray":
        import numpy as np

        return np.stack(prepared) if len(prepared) else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images: Sequence["Image"]) -> "np.ndarray":
        return self.encode_prepared([self.prepare_image(image) for image in images])

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray":
        import numpy as np

        rows = [self._vector(b"text:" + text.encode()) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def encode_texts_in(self, texts: Sequence[str], language: str | None) -> "np.ndarray":
        return self.encode_texts(texts)
