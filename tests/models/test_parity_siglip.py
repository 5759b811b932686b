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


@pytest.fixture(scope="module")
def google_form(tmp_path_factory):
    """A SigLIP checkpoint as Google publishes one: weights, and a sentencepiece model
    (spiece.model, trained here on a small corpus) with no tokenizer.json; exported by
    columnist (the slow SiglipTokenizer converted)."""
    import random

    spm = pytest.importorskip("sentencepiece", reason="a Google-form SigLIP needs sentencepiece: the [export] extra")
    from columnist.models.export import pretrained_siglip

    folder = tmp_path_factory.mktemp("google-siglip")
    corpus = folder / "corpus.txt"
    words = " ".join(PROMPTS + ["a photo of the Earth and the Moon from orbit", "astronauts on a spacewalk"])
    corpus.write_text("\n".join(words.split()[i:i + 8] and " ".join(words.split()[i:i + 8])
                                for i in range(0, len(words.split()), 3)) * 5)
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=300,
                                   hard_vocab_limit=False, model_type="unigram", pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    checkpoint = folder / "checkpoint"
    slow = transformers.SiglipTokenizer(vocab_file=str(folder / "spiece.model"))
    random_siglip("siglip-tiny", 1, vocab_size=len(slow)).save_pretrained(checkpoint)
    slow.save_pretrained(checkpoint)
    assert not (checkpoint / "tokenizer.json").exists() and (checkpoint / "spiece.model").exists()
    model, tokenizer, family = pretrained_siglip(str(checkpoint))
    export_siglip(model, tokenizer, folder / "exported", "google-form", str(checkpoint), family)
    rng = random.Random(0)
    alphabet = "abcdefghij xyz.,!?ÀéüßЖ日▁\t\n-_'\"🚀ﬁＦ\u00a0"
    texts = PROMPTS + ["  leading and trailing  ", "don't stop-me NOW.", "a_b c-d e.f", ""] + \
        ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))) for _ in range(500)]
    return model, transformers.AutoTokenizer.from_pretrained(checkpoint), texts, \
        ClipEncoder.from_directory(folder / "exported", threads=2)


def test_a_google_form_checkpoint_tokenizes_as_its_slow_siglip_tokenizer(google_form):
    """The same ids for every text; where sentencepiece and the tokenizers library meet a tie
    (two segmentations of equal score, e.g. a run of 300 'a's), the same text in pieces of the
    same total score."""
    _, slow, texts, encoder = google_form
    assert type(slow).__name__ == "SiglipTokenizer"  # no tokenizer.json: transformers' slow one
    expected = slow(texts, padding="max_length", truncation=True, max_length=64)["input_ids"]
    ours = encoder.text_tower.tokenizer(texts)
    different = [(want, [int(i) for i in got]) for want, got in zip(expected, ours) if list(got) != want]
    print(f"\n{len(texts) - len(different)} of {len(texts)} texts: the same ids; {len(different)} ties")
    assert len(different) <= 2
    for want, got in different:
        assert slow.decode(want) == slow.decode(got)
        assert abs(sum(map(slow.sp_model.GetScore, want)) - sum(map(slow.sp_model.GetScore, got))) < 1e-3


def test_a_google_form_checkpoint_embeds_texts_as_transformers_does(google_form):
    model, slow, texts, encoder = google_form
    ids = torch.tensor(slow(texts[:40], padding="max_length", truncation=True, max_length=64)["input_ids"])
    with torch.no_grad():
        reference = model.text_model(input_ids=ids).pooler_output.numpy()
    assert cosine(encoder.encode_texts(texts[:40]), reference).min() >= 0.9999
