"""Vector maths the model towers and the scoring share: unit-length rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def l2_normalise(matrix: "np.ndarray") -> "np.ndarray":
    """Rows (or a vector) scaled to unit length, as float32, so a dot product is a cosine."""
    import numpy as np

    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
