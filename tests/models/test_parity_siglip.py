"""SigLIP (and SigLIP2 at a fixed resolution: also a SiglipModel) against transformers on
identical random weights: preprocessing, padded token ids, both towers and the sigmoid
probabilities with the model's own logit scale and bias.

Needs the ``[export]`` extra (torch, transformers) and skips without it: ``make test-parity``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e '.[export]'")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers: pip install -e '.[export]'")

from columnist.models.clip import ClipEncoder  # noqa: E402
from columnist.models.export import export_siglip, random_sentencepiece, random_siglip  # noqa: E402
from tests.models.test_parity import PROMPTS, cosine, photos  # noqa: E402


@pytest.fixture(scope="module", params=["siglip", "siglip2"])
def exported(request, tmp_path_factory):
    family = request.param
    model, tokenizer = random_siglip("siglip-tiny", 0), random_sentencepiece(family)
    out = tmp_path_factory.mktemp(family)
    export_siglip(model, tokenizer, out, f"random-{family}", "test", family)
    return family, model, tokenizer, ClipEncoder.from_directory(out, threads=2)


def test_preprocessing_equals_siglip_image_processor(exported):
    *_, encoder = exported
    name = "SiglipImageProcessorPil" if hasattr(transformers, "SiglipImageProcessorPil") else "SiglipImageProcessor"
    processor = getattr(transformers, name)(size={"height": 224, "width": 224})
    images = photos()
    reference = processor(images=images, return_tensors="np")["pixel_values"]
    ours = encoder.image_tower.pixels(images)
    worst = float(np.abs(ours - reference).max())
    print(f"\n{name}: max |difference| {worst:.2e}")
    assert ours.shape == reference.shape and worst <= 1e-4


def test_token_ids_equal_a_fast_tokenizer_padded_to_max_length(exported):
    family, _, tokenizer, encoder = exported
    pad = "</s>" if family == "siglip" else "<pad>"
    reference = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad)
    expected = reference(PROMPTS, padding="max_length", truncation=True, max_length=64)["input_ids"]
    ours = encoder.text_tower.tokenizer(PROMPTS)
    assert ours.shape == (len(PROMPTS), 64)
    for prompt, want, got in zip(PROMPTS, expected, ours):
        assert list(got) == want, prompt
    end = tokenizer.token_to_id("</s>" if family == "siglip" else "<eos>")
    assert end in ours[PROMPTS.index("café au lait")]


def test_embeddings_and_probabilities_match_siglip_model(exported):
    _, model, _, encoder = exported
    images = photos()
    pixels = torch.from_numpy(encoder.image_tower.pixels(images))
    ids = torch.from_numpy(encoder.text_tower.tokenizer(PROMPTS))
    with torch.no_grad():
        reference_images = model.vision_model(pixel_values=pixels).pooler_output.numpy()
        reference_texts = model.text_model(input_ids=ids).pooler_output.numpy()
        logits = model(input_ids=ids, pixel_values=pixels).logits_per_image.numpy()
    ours_images, ours_texts = encoder.encode_images(images), encoder.encode_texts(PROMPTS)
    image_cos, text_cos = cosine(ours_images, reference_images), cosine(ours_texts, reference_texts)
    print(f"\nSigLIP image cosine min {image_cos.min():.7f}, text (incl. non-ASCII, over-long) {text_cos.min():.7f}")
    assert image_cos.min() >= 0.9999 and text_cos.min() >= 0.9999

    calibration = encoder.calibration  # sigmoid((logit - centre) / scale), logit = logit_scale x cos
    ours = 1 / (1 + np.exp(-((encoder.logit_scale * ours_images @ ours_texts.T) - calibration.centre) / calibration.scale))
    np.testing.assert_allclose(ours, 1 / (1 + np.exp(-logits)), atol=1e-4)
