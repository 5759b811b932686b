import numpy as np
import pytest

from columnist.vocab.calibration import fit_labelled, fit_logistic, suggest_unlabelled
from columnist.vocab.scoring import sigmoid, tier


def test_unlabelled_suggestion_separates_two_gaussians():
    rng = np.random.default_rng(1)
    low, high = rng.normal(18, 1.5, 6000), rng.normal(27, 2.0, 3000)
    logits = np.concatenate([low, high]).astype(np.float32)
    truth = np.r_[np.zeros(len(low)), np.ones(len(high))]
    fit, mixture = suggest_unlabelled(logits)
    assert 18 < fit.centre < 27
    assert mixture.means == pytest.approx((18, 27), abs=0.2)
    tiers = tier(sigmoid(logits, fit.centre, fit.scale), 0.8, 0.2)
    agree = ((tiers == "accepted") & (truth == 1)) | ((tiers == "rejected") & (truth == 0))
    assert agree.mean() >= 0.95


def test_labelled_fit_recovers_a_known_logistic():
    rng = np.random.default_rng(2)
    logits = rng.uniform(10, 40, 20000)
    labels = (rng.uniform(size=logits.size) < sigmoid(logits, 24.0, 2.0)).astype(float)
    fit, before, after = fit_labelled(logits, labels, centre=30.0, scale=5.0)
    assert fit.centre == pytest.approx(24.0, rel=0.05)
    assert fit.scale == pytest.approx(2.0, rel=0.05)
    assert after < before


def test_labels_that_fall_with_the_logit_are_refused():
    logits = np.linspace(0, 10, 50)
    with pytest.raises(ValueError, match="do not rise"):
        fit_logistic(logits, (logits < 5).astype(float))
