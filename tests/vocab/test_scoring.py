import numpy as np
import pytest

from columnist.models.mock import MockEncoder
from columnist.vectors import l2_normalise
from columnist.vocab.prompts import render_prompts, text_embeddings
from columnist.vocab.schema import parse_vocabulary
from columnist.vocab.scoring import score_vocabulary, sigmoid, tier

VOCAB = """
name: t
version: 1
templates: ["a photo of {description}", "an image of {description}"]
calibration: {centre: 20, scale: 2}
attributes:
  - {code: earth, description: "the Earth"}
  - {code: moon, description: "the Moon", calibration: {centre: 30, scale: 5}}
  - {code: astronaut, description: "an astronaut", templates: ["{description}"]}
  - {code: interior, description: "a spacecraft interior"}
derived:
  - {code: spacewalk, rule: "astronaut and not interior"}
  - {code: lunar_view, rule: "(earth or moon) and spacewalk"}
"""


@pytest.fixture
def vocab():
    return parse_vocabulary(VOCAB)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return l2_normalise(rng.standard_normal((20, 64)))


def test_sigmoid_is_centred_and_scaled():
    logits = np.array([20.0, 22.0, 18.0], np.float32)
    np.testing.assert_allclose(sigmoid(logits, 20, 2), [0.5, 1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))], rtol=1e-6)
    assert sigmoid(np.array([1e6, -1e6], np.float32), 0, 1).tolist() == [1.0, 0.0]


def test_tiers():
    assert tier(np.array([0.9, 0.8, 0.5, 0.2, 0.1]), 0.8, 0.2).tolist() == [
        "accepted", "accepted", "tentative", "rejected", "rejected"]


def test_prompt_ensemble_is_mean_of_normalised_embeddings(vocab):
    encoder = MockEncoder(dim=64)
    moon = vocab.entry("moon")
    assert render_prompts(vocab, moon) == ["a photo of the Moon", "an image of the Moon"]
    singles = l2_normalise(encoder.encode_texts(render_prompts(vocab, moon)))
    expected = l2_normalise(singles.mean(axis=0))
    np.testing.assert_allclose(text_embeddings(encoder, vocab)["moon"], expected, rtol=1e-6)
    assert render_prompts(vocab, vocab.entry("astronaut")) == ["an astronaut"]


def test_logits_and_per_attribute_calibration(vocab, images):
    encoder = MockEncoder(dim=64)
    texts = text_embeddings(encoder, vocab)
    scores = score_vocabulary(images, texts, vocab, logit_scale=100.0)
    expected_logits = 100.0 * images @ texts["moon"]
    np.testing.assert_allclose(scores.logits["moon"], expected_logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores.scores["moon"], 1 / (1 + np.exp(-(expected_logits - 30) / 5)), rtol=1e-5)
    np.testing.assert_allclose(scores.scores["earth"], 1 / (1 + np.exp(-(scores.logits["earth"] - 20) / 2)), rtol=1e-5)
    assert scores.sources["earth"] == "clip" and scores.sources["spacewalk"] == "derived"


def test_derived_scores_equal_fuzzy_formula(vocab, images):
    texts = text_embeddings(MockEncoder(dim=64), vocab)
    s = score_vocabulary(images, texts, vocab, logit_scale=100.0).scores
    spacewalk = np.minimum(s["astronaut"], 1 - s["interior"])
    np.testing.assert_array_equal(s["spacewalk"], spacewalk)
    np.testing.assert_array_equal(s["lunar_view"], np.minimum(np.maximum(s["earth"], s["moon"]), spacewalk))


def test_adding_an_attribute_leaves_every_other_score_bit_identical(vocab, images):
    encoder = MockEncoder(dim=64)
    before = score_vocabulary(images, text_embeddings(encoder, vocab), vocab, 100.0)
    bigger = parse_vocabulary(VOCAB.replace(
        "derived:", '  - {code: porthole, description: "a spacecraft window or porthole"}\n'
        '  - {code: hand, description: "a human hand"}\nderived:'))
    after = score_vocabulary(images, text_embeddings(encoder, bigger), bigger, 100.0)
    assert set(after.codes) == set(before.codes) | {"porthole", "hand"}
    for code in before.codes:
        assert after.scores[code].tobytes() == before.scores[code].tobytes(), code
        assert np.array_equal(after.logits[code], before.logits[code], equal_nan=True), code
