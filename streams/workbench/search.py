"""`columnist search "TEXT"`: the stored images (and video frames) a free-text description fits
best, each with a calibrated probability, ranked by ClickHouse where the embeddings are.

The phrase is rendered into the vocabulary's templates and encoded once (a prompt ensemble,
as an attribute's description is), then ranked in the engine: no embedding leaves it. The
probability is the vocabulary's (or a SigLIP model's own) sigmoid of the logit, so a cutoff
means what it means for the vocabulary's columns. The phrase is kept in ``search_phrase``
with its calibration, so a dashboard ranks by it in SQL afterwards, with the parametrized view
``columnist.search(phrase = '…')`` (store.search holds the statements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from columnist.vocab.prompts import prompt_ensemble

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.vocab.prompts import TextEncoder
    from columnist.vocab.schema import Vocabulary

MAX_PHRASE = 1_000


@dataclass(frozen=True)
class Phrase:
    text: str
    embedding: "np.ndarray"
    logit_scale: float
    centre: float
    scale: float


@dataclass(frozen=True)
class Found:
    image_id: str
    probability: float
    logit: float
    uri: str
    """The image's (or, for a frame, its video's) URI."""


def encode_phrase(text: str, encoder: "Encoder", prompts: "TextEncoder", vocab: "Vocabulary") -> Phrase:
    """The phrase in the vocabulary's templates, as one unit vector, with its calibration."""
    text = " ".join(text.split())[:MAX_PHRASE]
    calibration = encoder.calibration or vocab.calibration
    vector = prompt_ensemble(prompts, [t.format(description=text) for t in vocab.templates])
    return Phrase(text, vector, encoder.logit_scale, calibration.centre, calibration.scale)
