"""onnxruntime sessions: the optimised graph kept per CPU and model file opens as the model does."""

import shutil

import numpy as np
import pytest

from columnist.models import sessions
from columnist.models.registry import resolve_model_dir


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """tiny-clip's image tower in a folder of its own, kept optimised in tmp_path/cache (the
    tiny model is under the size from which copies are kept), and every file a session opens."""
    monkeypatch.setattr(sessions, "OPTIMISED_CACHE", tmp_path / "cache")
    monkeypatch.setattr(sessions, "OPTIMISED_BYTES", (0, 1 << 30))
    model = tmp_path / "model" / "visual.onnx"
    model.parent.mkdir()
    shutil.copy(resolve_model_dir("tiny-clip") / "visual.onnx", model)
    import onnxruntime as ort

    opened, real = [], ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    return model, opened


def embed(session) -> np.ndarray:
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    shape = session.get_inputs()[0].shape
    pixels = np.resize(pixels, (2, 3, shape[2], shape[3])).astype(np.float32)
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]


def test_the_optimised_graph_is_kept_and_opened_next_time_with_the_same_outputs(kept):
    model, opened = kept
    first = sessions.onnxruntime_session(model, threads=1)
    copy = sessions.optimised_copy(model)
    assert copy.is_file() and opened == [str(model)]
    second = sessions.onnxruntime_session(model, threads=1)
    assert opened[-1] == str(copy)  # the copy, not the model
    np.testing.assert_array_equal(embed(first), embed(second))
    assert list(copy.parent.iterdir()) == [copy]  # nothing partial left


def test_a_damaged_copy_is_made_again(kept, caplog):
    model, opened = kept
    sessions.onnxruntime_session(model, threads=1)
    copy = sessions.optimised_copy(model)
    copy.write_bytes(b"not a model")
    reference = embed(sessions.onnxruntime_session(model, threads=1, providers=["CPUExecutionProvider"]))
    assert "made again" in caplog.text and copy.stat().st_size > 100
    np.testing.assert_array_equal(embed(sessions.onnxruntime_session(model, threads=1)), reference)
    assert not copy.with_suffix(".refused").exists()  # opened again: it was damaged, not unreadable


def test_a_copy_that_cannot_be_opened_twice_running_is_no_longer_kept(kept, caplog):
    model, opened = kept
    sessions.onnxruntime_session(model, threads=1)
    copy = sessions.optimised_copy(model)
    for _ in range(2):  # as if this onnxruntime could not read back the graphs it writes
        copy.write_bytes(b"not a model")
        sessions.onnxruntime_session(model, threads=1)
    assert "no more copies are kept" in caplog.text and not copy.exists()
    opened.clear()
    sessions.onnxruntime_session(model, threads=1)
    assert opened == [str(model)] and not copy.exists()  # the model itself, optimised as it opens


def test_a_changed_model_file_replaces_its_copy_and_keeps_others(kept, tmp_path):
    model, _ = kept
    other = tmp_path / "other" / "visual.onnx"
    other.parent.mkdir()
    shutil.copy(model, other)
    sessions.onnxruntime_session(other, threads=1)
    sessions.onnxruntime_session(model, threads=1)
    before = sessions.optimised_copy(model)
    model.write_bytes(model.read_bytes())  # written again: another fingerprint
    sessions.onnxruntime_session(model, threads=1)
    after = sessions.optimised_copy(model)
    assert after != before and after.is_file() and not before.exists()
    assert sessions.optimised_copy(other).is_file()  # another model's copy stays


def test_copies_for_another_cpu_or_runtime_stay_and_partial_copies_of_killed_runs_go(kept):
    import os
    import time

    model, _ = kept
    copy = sessions.optimised_copy(model)
    copy.parent.mkdir(parents=True)
    where, content, _ = copy.stem.split("-")
    other_cpu = copy.with_name(f"{where}-{content}-0123456789abcdef.onnx")
    killed, writing = (copy.with_name(f"{copy.stem}.{pid}.partial") for pid in (1, 2))
    for each in (other_cpu, killed, writing):
        each.write_bytes(b"x")
    hour_ago = time.time() - 2 * sessions.PARTIAL_AGE_S
    os.utime(killed, (hour_ago, hour_ago))
    sessions.onnxruntime_session(model, threads=1)
    assert copy.is_file() and other_cpu.exists() and writing.exists() and not killed.exists()


def test_a_cache_that_cannot_be_written_costs_only_time(kept, tmp_path, monkeypatch):
    model, opened = kept
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(sessions, "OPTIMISED_CACHE", blocked / "cache")
    assert embed(sessions.onnxruntime_session(model, threads=1)).shape[0] == 2
    assert set(opened) == {str(model)}


def test_small_models_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(sessions, "OPTIMISED_CACHE", tmp_path / "cache")
    sessions.onnxruntime_session(resolve_model_dir("tiny-clip") / "visual.onnx", threads=1)
    assert not (tmp_path / "cache").exists()
