"""Parity with the reference implementation (transformers' CLIPModel, CLIPImageProcessor,
CLIPTokenizer) on identical weights: the committed tiny-clip is the seeded random model that
``models.export.random_clip('tiny', 0)`` builds, so torch and onnxruntime see the same weights.

These tests need the ``[export]`` extra (torch, transformers, open-clip-torch) and skip
without it; run them with ``make test-parity``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e '.[export]'")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers: pip install -e '.[export]'")
skimage_data = pytest.importorskip("skimage.data")

from columnist.models.clip import ClipEncoder  # noqa: E402
from columnist.models.export import bundled_bpe_path, random_clip  # noqa: E402
from columnist.models.registry import resolve_model_dir  # noqa: E402
from columnist.models.tokenizer import clip_vocab_and_merges  # noqa: E402

PHOTOS = ["astronaut", "rocket", "hubble_deep_field", "coffee", "chelsea", "moon", "camera"]
PROMPTS = [
    "a photo of a cat", "a photo of the planet Earth seen from space", "An ASTRONAUT in a white spacesuit!",
    "the Moon", "a rocket launching, with flames & smoke", "mission-control room (1969)", "Apollo 11",
    "STS-135 crew", "3 astronauts", "12345", "3.14159", "$100 satellite", "e-mail me: crew@iss.example",
    "what's this? it's a porthole", "they're we've I'm you'll he'd", "don't", "Earth's limb",
    "hello,world", "a  photo   with\tspaces\nand newlines", "   leading and trailing   ", "",
    "café au lait", "naïve résumé", "Ångström", "straße", "日本の宇宙飛行士", "космонавт на орбите",
    "رائد فضاء", "🚀 rocket emoji", "😀😀😀", "ﬁne ligature", "Ｆｕｌｌｗｉｄｔｈ", "<|endoftext|> inside",
    "a photo of <|startoftext|> tokens", "tab\tseparated\tvalues", "UPPER lower MiXeD",
    "#hashtag @mention", "50% off", "x^2 + y^2 = z^2", "C++ and C#", "path/to/file.jpg",
    "http://example.com/moon.png", "a" * 300, "space " * 100, "the quick brown fox " * 20,
    "1 2 3 4 5 6 7 8 9 10 " * 10, "ISS", "spacewalk (EVA) outside the station",
    "aurora borealis", "a spacecraft window or porthole", "Hubble deep field", "naïve café " * 30,
]


@pytest.fixture(scope="module")
def reference_model():
    return random_clip("tiny", 0)


@pytest.fixture(scope="module")
def encoder():
    return ClipEncoder.from_directory(resolve_model_dir("tiny-clip"), threads=2)


def photos():
    from PIL import Image

    images = []
    for name in PHOTOS:
        array = getattr(skimage_data, name)()
        images.append(Image.fromarray(array).convert("RGB"))
    return images


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _reference_pixels(processor_class: str, images) -> np.ndarray:
    processor = getattr(transformers, processor_class, None)
    if processor is None:
        pytest.skip(f"{processor_class} is not in transformers {transformers.__version__}")
    return processor()(images=images, return_tensors="np")["pixel_values"]


def test_preprocessing_equals_clip_image_processor(encoder):
    """The PIL image processor (transformers 5's CLIPImageProcessorPil; CLIPImageProcessor
    before 5) is the one CLIP was trained with: bicubic resizing in Pillow."""
    images = photos()
    name = "CLIPImageProcessorPil" if hasattr(transformers, "CLIPImageProcessorPil") else "CLIPImageProcessor"
    reference = _reference_pixels(name, images)
    ours = encoder.image_tower.pixels(images)
    assert ours.shape == reference.shape == (len(images), 3, 224, 224)
    worst = float(np.abs(ours - reference).max())
    print(f"\n{name}: max |difference| over {len(images)} photos = {worst:.2e}")
    assert worst <= 1e-4


def test_preprocessing_against_torchvision_processor_is_reported(encoder):
    """transformers 5's default CLIPImageProcessor resizes with torchvision on tensors, which
    rounds differently from Pillow: reported, and bounded to a couple of intensity levels."""
    if not hasattr(transformers, "CLIPImageProcessorPil"):
        pytest.skip("before transformers 5 CLIPImageProcessor is the Pillow one, tested above")
    images = photos()
    difference = np.abs(encoder.image_tower.pixels(images) - _reference_pixels("CLIPImageProcessor", images))
    print(f"\nCLIPImageProcessor (torchvision): max |difference| {difference.max():.2e}, mean {difference.mean():.2e}")
    assert difference.max() < 3 / 255 / min(0.26130258, 0.26862954)


def test_token_ids_equal_clip_tokenizer(encoder):
    vocab, merges = clip_vocab_and_merges(bundled_bpe_path())
    reference = transformers.CLIPTokenizer(vocab=vocab, merges=merges)
    assert len(PROMPTS) >= 50
    expected = reference(PROMPTS, padding="max_length", truncation=True, max_length=77)["input_ids"]
    ours = encoder.text_tower.tokenizer(PROMPTS)
    for prompt, want, got in zip(PROMPTS, expected, ours):
        assert list(got) == want, prompt
    assert ours[PROMPTS.index("a" * 300)][-1] == 49407  # truncated with the end token kept


def test_token_ids_against_openai_simple_tokenizer(encoder):
    """open_clip's port of openai/CLIP's own tokenizer; it also runs ftfy, so report differences."""
    open_clip = pytest.importorskip("open_clip")
    reference = open_clip.tokenizer.SimpleTokenizer()
    ours = encoder.text_tower.tokenizer(PROMPTS)
    expected = reference(PROMPTS, context_length=77).numpy()
    ours = np.where(ours == 49407, 0, ours)  # openai pads with 0 after the end token
    expected = np.where(expected == 49407, 0, expected)
    differing = [p for p, a, b in zip(PROMPTS, ours, expected) if not np.array_equal(a, b)]
    print(f"\nopenai SimpleTokenizer: {len(PROMPTS) - len(differing)}/{len(PROMPTS)} prompts identical; differ: {differing}")
    assert len(differing) <= 5


def test_image_embeddings_match_clip_model(encoder, reference_model):
    images = photos()
    pixels = encoder.image_tower.pixels(images)
    with torch.no_grad():
        output = reference_model.get_image_features(pixel_values=torch.from_numpy(pixels))
    reference = getattr(output, "pooler_output", output).numpy()
    cos = cosine(encoder.encode_images(images), reference)
    print(f"\nimage embeddings: min cosine to CLIPModel = {cos.min():.7f}")
    assert cos.min() >= 0.9999


def test_text_embeddings_match_clip_model(encoder, reference_model):
    ids = encoder.text_tower.tokenizer(PROMPTS)
    with torch.no_grad():
        output = reference_model.get_text_features(input_ids=torch.from_numpy(ids))
    reference = getattr(output, "pooler_output", output).numpy()
    cos = cosine(encoder.encode_texts(PROMPTS), reference)
    print(f"\ntext embeddings: min cosine to CLIPModel = {cos.min():.7f}")
    assert cos.min() >= 0.9999


def test_int8_towers_cosine_to_fp32_is_reported(encoder, tmp_path):
    from columnist.models.quantize import quantize_model_dir

    quantize_model_dir(resolve_model_dir("tiny-clip"), tmp_path / "int8")
    int8 = ClipEncoder.from_directory(tmp_path / "int8", threads=2)
    images = photos()
    image_cos = cosine(int8.encode_images(images), encoder.encode_images(images))
    text_cos = cosine(int8.encode_texts(PROMPTS), encoder.encode_texts(PROMPTS))
    print(f"\nint8 vs fp32 (tiny-clip): image cosine min {image_cos.min():.5f} mean {image_cos.mean():.5f}; "
          f"text cosine min {text_cos.min():.5f} mean {text_cos.mean():.5f}")
    assert int8.spec.dtype == "int8"


def test_tiny_clip_regenerates_bit_for_bit(tmp_path):
    """`make tiny-clip`'s command, in a process of its own as make runs it."""
    import hashlib
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, "-m", "columnist", "model", "export", "--random", "tiny", "--seed", "0",
                    "--name", "tiny-clip", "--out", str(tmp_path)], env=env, check=True, capture_output=True)
    committed = resolve_model_dir("tiny-clip")
    for file in ("visual.onnx", "textual.onnx", "tokenizer.json", "model.json"):
        digest = [hashlib.sha256((d / file).read_bytes()).hexdigest() for d in (committed, tmp_path)]
        assert digest[0] == digest[1], f"{file} differs from the committed tiny-clip (torch {torch.__version__})"
