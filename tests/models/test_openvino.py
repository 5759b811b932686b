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


@pytest.fixture(autouse=True, scope="module")
def fresh_compiled_cache(tmp_path_factory):
    """Every run compiles anew, f32 first and then the CPU's default precision: the order in
    which OpenVINO's cache, whose key leaves the precision out, gave the bf16 model the f32
    one's file (it answered NaN, on a Xeon with AMX, until its cache was emptied)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


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


def test_each_precision_keeps_its_compiled_models_apart():
    from columnist.models.openvino_runtime import compiled_cache

    assert len({compiled_cache("f32"), compiled_cache("bf16"), compiled_cache(None)}) == 3


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


def test_auto_measures_each_runtime_once_per_cpu_and_model_and_keeps_the_fastest_that_agrees(tmp_path, monkeypatch):
    """On tiny-clip (small towers are not measured by default: worth_measuring is forced)."""
    from columnist.models import clip, runtime_choice
    from columnist.models.registry import resolve_model_dir
    from columnist.models.spec import ModelSpec

    directory = resolve_model_dir("tiny-clip")
    spec = ModelSpec.read(directory)
    cache = tmp_path / "runtimes.json"
    choice = runtime_choice.choose(directory, spec, threads=2, batch_size=8, cache=cache)
    assert set(choice.img_s) == {"onnxruntime", "openvino"} and not choice.cached
    agreeing = {n: r for n, r in choice.img_s.items() if choice.cosine[n] >= runtime_choice.COSINE_FLOOR}
    assert choice.runtime == max(agreeing, key=agreeing.get)
    print(f"\nauto on this CPU: {choice.describe()}")

    def must_not_measure(*args):
        raise AssertionError("measured again")
    again = runtime_choice.choose(directory, spec, threads=2, batch_size=8, measure=must_not_measure, cache=cache)
    assert again.cached and again.runtime == choice.runtime
    monkeypatch.setattr(runtime_choice, "CACHE", cache)
    monkeypatch.setattr(clip, "worth_measuring", lambda tower: True)
    encoder = clip.ClipEncoder(directory, spec, threads=2, batch_size=8)
    assert encoder.runtime == choice.runtime and encoder.choice.cached
    assert clip.ClipEncoder(directory, spec, threads=2, batch_size=8, runtime="onnxruntime").choice is None


def test_the_remembered_choice_follows_the_model_content_batch_and_cpu(tmp_path, monkeypatch):
    from columnist.models import machine, runtime_choice
    from columnist.models.spec import ModelSpec

    (tmp_path / "visual.onnx").write_bytes(b"first")
    spec = ModelSpec(name="fake", embedding_dim=4, image_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    measured = []

    def measure(tower, spec, names, threads, batch_size):
        measured.append(batch_size)
        return runtime_choice.Choice(names[0], {names[0]: 1.0}, {names[0]: 1.0})
    cache = tmp_path / "runtimes.json"
    for batch in (32, 32, 8):
        runtime_choice.choose(tmp_path, spec, batch_size=batch, measure=measure, cache=cache)
    assert measured == [32, 8]
    (tmp_path / "visual.onnx").write_bytes(b"second")  # another model under the same name
    runtime_choice.choose(tmp_path, spec, batch_size=32, measure=measure, cache=cache)
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2"})  # another CPU
    runtime_choice.choose(tmp_path, spec, batch_size=32, measure=measure, cache=cache)
    assert measured == [32, 8, 32, 32]
    assert load_encoder("tiny-clip").runtime == "onnxruntime" and load_encoder("tiny-clip").choice is None

@pytest.mark.parametrize("written", [
    '{KEY: {"runtime": "onnxruntime", "img_s": {}, "cosine": {}, "future": 1}}',  # a newer columnist's: used
    '{KEY: "onnxruntime"}',
    '{KEY: {"runtime": "onnxruntime", "img_s": {"onnxruntime": "fast"}}}',
    '{KEY: {"runtime": "onnxruntime", "img_s": {"onnxruntime": NaN}}}',
    '{KEY: {"runtime": "rm -rf", "img_s": {}}}',
    '{KEY: {"runtime": ["onnxruntime"]}}',
    '{KEY: {"runtime": {"a": 1}}}',
    "[" * 100_000,
    "FIFO",
])
def test_a_remembered_choice_that_is_not_one_is_measured_again(tmp_path, written):
    """~/.columnist/runtimes.json is the user's file: whatever it holds, a worker starts."""
    import json
    import os

    from columnist.models import runtime_choice
    from columnist.models.spec import ModelSpec

    (tmp_path / "visual.onnx").write_bytes(b"model")
    spec = ModelSpec(name="fake", embedding_dim=4, image_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    cache, measured = tmp_path / "runtimes.json", []

    def measure(tower, spec, names, threads, batch_size):
        measured.append(names[0])
        return runtime_choice.Choice(names[0], {names[0]: 1.0}, {names[0]: 1.0})

    runtime_choice.choose(tmp_path, spec, measure=measure, cache=cache)
    key = next(iter(json.loads(cache.read_text())))
    cache.unlink()
    if written == "FIFO":
        os.mkfifo(cache)
    else:
        cache.write_text(written.replace("KEY", json.dumps(key)))
    usable = "future" in written
    assert (runtime_choice.remembered(tmp_path, spec, cache=cache) is not None) == usable
    if written != "FIFO":
        assert runtime_choice.choose(tmp_path, spec, measure=measure, cache=cache).runtime == "onnxruntime"
        assert len(measured) == (1 if usable else 2)
