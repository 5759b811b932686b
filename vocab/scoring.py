"""Scoring maths: logits, independent sigmoids, tiers and derived attributes.

Every attribute is scored on its own: logit = logit_scale x cosine(image, text), score =
sigmoid((logit - centre) / scale). There is no softmax across attributes, so adding one
never moves another's score. Each attribute's logits are one matrix-vector product, never a
column of a larger matrix product, because BLAS may sum in a different order when the
matrix shape changes; one attribute's score is then bit-identical whatever else is scored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from columnist.records import ModelCalibration, Scores
from columnist.vocab.rules import evaluate, parse_rule
from columnist.vocab.schema import Vocabulary

if TYPE_CHECKING:
    import numpy as np

ACCEPTED, TENTATIVE, REJECTED = "accepted", "tentative", "rejected"


def clip_logits(images: "np.ndarray", text: "np.ndarray", logit_scale: float) -> "np.ndarray":
    """logit_scale x cosine for unit-length ``images`` (n, d) against one text vector (d,)."""
    import numpy as np

    return (np.float32(logit_scale) * (images @ text)).astype(np.float32)


def sigmoid(logits: "np.ndarray", centre: float, scale: float) -> "np.ndarray":
    import numpy as np

    z = (logits.astype(np.float64) - centre) / scale
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # stable for large |z|


def tier(scores: "np.ndarray", accept: float, reject: float) -> "np.ndarray":
    """'accepted' at or above ``accept``, 'rejected' at or below ``reject``, else 'tentative'."""
    import numpy as np

    return np.where(scores >= accept, ACCEPTED, np.where(scores <= reject, REJECTED, TENTATIVE))


def score_base(
    images: "np.ndarray", texts: Mapping[str, "np.ndarray"], vocab: Vocabulary, logit_scale: float,
    source: str = "clip", model_calibration: ModelCalibration | None = None,
) -> Scores:
    """Score the base attributes whose text embeddings are in ``texts``; ``model_calibration``:
    the model's own default (Vocabulary.calibration_for)."""
    out = Scores(vocab.name, vocab.version)
    for attribute in vocab.attributes:
        if attribute.code not in texts:
            continue
        calibration = vocab.calibration_for(attribute, model_calibration)
        logits = clip_logits(images, texts[attribute.code], logit_scale)
        out.logits[attribute.code] = logits
        out.scores[attribute.code] = sigmoid(logits, calibration.centre, calibration.scale)
        out.sources[attribute.code] = source
    return out


def score_derived(base: Scores, vocab: Vocabulary) -> Scores:
    """Add every derived attribute to ``base`` (fuzzy and = min, or = max, not = 1 - x)."""
    import numpy as np

    for derived in vocab.derived_in_order():
        values = evaluate(parse_rule(derived.rule), base.scores).astype(np.float32)
        base.scores[derived.code] = values
        base.logits[derived.code] = np.full_like(values, np.nan)
        base.sources[derived.code] = "derived"
    return base


def score_vocabulary(
    images: "np.ndarray", texts: Mapping[str, "np.ndarray"], vocab: Vocabulary, logit_scale: float,
    source: str = "clip", model_calibration: ModelCalibration | None = None,
) -> Scores:
    """Every base and derived attribute of ``vocab`` for unit-length image embeddings."""
    return score_derived(score_base(images, texts, vocab, logit_scale, source, model_calibration), vocab)
