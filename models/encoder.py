"""The encoder interface every model implements (mock, ONNX CLIP, ...).

Embeddings come back as float32 rows of unit length, so a dot product is a cosine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from columnist.vocab.schema import Calibration


def l2_normalise(matrix: "np.ndarray") -> "np.ndarray":
    """Rows (or a vector) scaled to unit length, as float32."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


@runtime_checkable
class Encoder(Protocol):
    name: str
    """Stored with every embedding and score, so a model change is never mixed up."""
    dim: int
    image_size: int
    """The side of the square the image tower sees (images are decoded at twice this at least)."""
    logit_scale: float
    source: str
    """The ``source`` written with scores: 'clip' for a real model, 'mock' for the mock."""
    calibration: "Calibration | None"
    """The model's own default centre and scale (vocab.schema.Calibration): models with a
    learned logit bias (SigLIP) have one; None leaves the vocabulary's."""

    def prepare_image(self, image: "Image") -> "np.ndarray":
        """What the image tower needs of one decoded image (CLIP: its normalised pixels).

        The worker prepares each image as soon as it is decoded and keeps only this, so a
        batch never holds more than one full-size decoded image."""
        ...

    def encode_prepared(self, prepared: Sequence["np.ndarray"]) -> "np.ndarray":
        """(len(prepared), dim) unit-length float32 embeddings of prepared images."""
        ...

    def encode_images(self, images: Sequence["Image"]) -> "np.ndarray":
        """(len(images), dim) unit-length float32 embeddings of decoded RGB images."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray":
        """(len(texts), dim) unit-length float32 embeddings."""
        ...
