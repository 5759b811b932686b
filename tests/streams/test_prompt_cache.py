"""Prompt embeddings: kept in the store, and for a large model in every store of this user."""

import os
import sqlite3

import numpy as np
import pytest

from columnist import prompt_cache
from columnist.models import clip
from columnist.models.registry import load_encoder
from columnist.prompt_cache import PromptCache, SharedPrompts
from columnist.records import Counters

PROMPTS = ["a photo of the Moon", "a photo of a rocket", "a photo of a cat"]


@pytest.fixture
def large(tmp_path, monkeypatch):
    """tiny-clip taken for a large model (whose prompts are kept per user), kept in tmp_path."""
    monkeypatch.setattr(clip, "SHARED_PROMPTS_MIN_BYTES", 0)
    monkeypatch.setattr(prompt_cache, "SHARED", tmp_path / "prompts")
    return load_encoder("tiny-clip", threads=1)


def test_a_new_store_takes_the_prompts_another_store_encoded(large, store):
    first = Counters()
    encoded = PromptCache(large, None, first).encode_texts(PROMPTS)  # a store elsewhere (or none)
    again = Counters()
    kept = PromptCache(large, store, again).encode_texts(PROMPTS)
    assert (first.prompts_encoded, again.prompts_encoded) == (3, 0)
    np.testing.assert_array_equal(kept, encoded)
    assert len(store.prompt_embeddings(large.name, [("", p) for p in PROMPTS])) == 3  # now in this store too


def test_a_small_model_or_the_mock_keeps_nothing_per_user(tmp_path, monkeypatch):
    from columnist.models.mock import MockEncoder

    monkeypatch.setattr(prompt_cache, "SHARED", tmp_path / "prompts")
    for encoder in (load_encoder("tiny-clip", threads=1), MockEncoder()):
        assert PromptCache(encoder, None).shared is None
    PromptCache(load_encoder("tiny-clip", threads=1), None).encode_texts(PROMPTS)
    assert not (tmp_path / "prompts").exists()


@pytest.mark.parametrize("damage", ["garbage", "short rows", "not finite", "text rows", "null rows", "a folder",
                                    "a FIFO"])
def test_a_damaged_file_only_means_encoding_again(large, damage):
    cache = PromptCache(large, None)
    reference = cache.encode_texts(PROMPTS)
    path = cache.shared.path
    if damage == "garbage":
        path.write_bytes(b"not a database" * 100)
    elif damage == "a folder":
        path.unlink()
        path.mkdir()
    elif damage == "a FIFO":  # SQLite would wait on it for ever
        path.unlink()
        os.mkfifo(path)
    else:
        bad = {"short rows": b"\x00" * 8, "text rows": "x" * 4 * large.dim, "null rows": None}.get(
            damage, np.full(large.dim, np.nan, np.float32).tobytes())
        with sqlite3.connect(path) as db:
            db.execute("UPDATE prompt SET embedding = ?", (bad,))
    counted = Counters()
    np.testing.assert_allclose(PromptCache(large, None, counted).encode_texts(PROMPTS), reference, atol=1e-6)
    assert counted.prompts_encoded == 3


def test_nothing_more_is_kept_beyond_the_limit(large, monkeypatch):
    monkeypatch.setattr(SharedPrompts, "MAX_ROWS", 4)
    PromptCache(large, None).encode_texts(PROMPTS)
    PromptCache(large, None).encode_texts(["a photo of a dog", "a photo of a comet"])  # 5 in all: not kept
    counted = Counters()
    PromptCache(large, None, counted).encode_texts([*PROMPTS, "a photo of a dog"])
    assert counted.prompts_encoded == 1


def test_a_new_version_of_the_model_replaces_the_file_of_the_one_before(large, tmp_path):
    import shutil

    from columnist.models.registry import resolve_model_dir

    PromptCache(large, None).encode_texts(PROMPTS)
    copied = tmp_path / "model"
    shutil.copytree(resolve_model_dir("tiny-clip"), copied)
    newer = load_encoder(str(copied), threads=1)
    newer.name = large.name  # the same model name, another text tower file: another version
    counted = Counters()
    PromptCache(newer, None, counted).encode_texts(PROMPTS)
    assert counted.prompts_encoded == 3
    assert [p.name for p in (tmp_path / "prompts").iterdir()] == [f"{newer.shared_prompts_key}.sqlite3"]
