"""The OpenVINO runtime against onnxruntime (the reference) on the same towers and real photos."""

from __future__ import annotations

import numpy as np
import pytest

from columnist.models.images import open_image
from columnist.models.registry import load_encoder
from tests.conftest import PHOTOS

PROMPTS = ["a photo of the Moon", "an astronaut on a spacewalk", "a cup of coffee", "a cat"]


def embeddings(encoder) -> tuple[np.ndarray, np.ndarray]:
    images = [open_image(p.read_bytes(), p.name) for p in sorted(PHOTOS.glob("*.jpg"))]
    return encoder.encode_images(images), encoder.encode_texts(PROMPTS)


@pytest.fixture(scope="module")
def reference():
    return embeddings(load_encoder("tiny-clip", runtime="onnxruntime"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # rows are unit length


@pytest.mark.parametrize("runtime, at_least", [("openvino-f32", 0.99999), ("openvino", 0.999)])
def test_openvino_matches_onnxruntime(reference, runtime, at_least):
    images, texts = embeddings(load_encoder("tiny-clip", runtime=runtime))
    assert cosines(images, reference[0]).min() >= at_least
    assert cosines(texts, reference[1]).min() >= at_least


def test_an_openvino_int8_quantized_model_runs_on_openvino_and_stays_close(reference, tmp_path):
    from columnist.models.openvino_runtime import quantize_for_openvino
    from columnist.models.registry import resolve_model_dir
    from columnist.models.spec import ModelSpec

    spec = quantize_for_openvino(resolve_model_dir("tiny-clip"), tmp_path / "int8", sorted(PHOTOS.glob("*.jpg")))
    assert (spec.runtime, spec.dtype, spec.visual) == ("openvino", "int8", "visual.xml")
    assert ModelSpec.read(tmp_path / "int8") == spec
    encoder = load_encoder(str(tmp_path / "int8"))  # 'auto': the runtime the model directory names
    assert encoder.runtime == "openvino"
    images, texts = embeddings(encoder)
    print(f"\nOpenVINO int8 (tiny-clip) vs onnxruntime fp32: image cosine min {cosines(images, reference[0]).min():.5f}")
    assert cosines(images, reference[0]).min() >= 0.99
    assert cosines(texts, reference[1]).min() >= 0.999  # not quantized; bf16 where the CPU has it


def test_auto_runs_large_fp32_models_on_openvino_only_where_the_cpu_has_bf16_units(monkeypatch, tmp_path):
    from columnist.models import sessions
    from columnist.models.sessions import AUTO_MIN_BYTES, resolve_runtime

    large, small = tmp_path / "large.onnx", tmp_path / "small.onnx"
    large.write_bytes(b"\0" * AUTO_MIN_BYTES)
    small.write_bytes(b"\0" * 1024)
    monkeypatch.setattr(sessions, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert resolve_runtime("auto", "onnxruntime", "fp32", large) == "openvino"
    assert resolve_runtime("auto", "onnxruntime", "fp32", small) == "onnxruntime"  # compile time outweighs
    assert resolve_runtime("auto", "onnxruntime", "int8", large) == "onnxruntime"  # quantized for onnxruntime
    assert resolve_runtime("onnxruntime", "onnxruntime", "fp32", large) == "onnxruntime"  # asked for
    monkeypatch.setattr(sessions, "cpu_flags", lambda: {"avx2"})
    assert resolve_runtime("auto", "onnxruntime", "fp32", large) == "onnxruntime"
    assert load_encoder("tiny-clip").runtime == "onnxruntime"
