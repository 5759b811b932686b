"""BatchPreparer: new contents decoded on threads, in order, each failure its own."""

import threading

from columnist.models import images
from columnist.models.images import ImageError
from columnist.models.mock import MockEncoder
from columnist import pipeline
from columnist.pipeline import BatchPreparer, sha256_of
from columnist.records import ImageInput, ImageLimits
from tests.conftest import PHOTOS


def _inputs(datas: list[bytes]) -> list[ImageInput]:
    return [ImageInput(d, sha256_of(d), f"item-{n}", f"id-{n}", f"file:///x/{n}") for n, d in enumerate(datas)]


def test_results_keep_order_duplicates_decode_once_and_failures_are_per_item():
    photos = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))[:4]]
    datas = [photos[0], b"not an image", photos[1], photos[0], photos[2], b"not an image", photos[3]]
    results = BatchPreparer(MockEncoder(), {}, ImageLimits(decode_threads=2)).prepare_all(_inputs(datas))

    assert [r.record.image_id if not isinstance(r, Exception) else "error" for r in results] == [
        "id-0", "error", "id-2", "id-3", "id-4", "error", "id-6"]
    assert isinstance(results[1], ImageError) and "item-1" in str(results[1])
    assert results[5].reason == results[1].reason  # the same bad content is not decoded twice,
    assert "item-5" in str(results[5]) and "item-1" not in str(results[5])  # and is said of each image
    decoded = [r for r in results if not isinstance(r, Exception) and r.tensor is not None]
    assert len(decoded) == 4  # photos[0] twice: its second item reuses the first
    assert results[3].tensor is None and results[3].record.sha256 == results[0].record.sha256


def test_large_decodes_take_turns(monkeypatch):
    """Images over LARGE_DECODE_PIXELS are decoded one at a time, whatever the thread count."""
    running, peak, lock = 0, 0, threading.Lock()
    real_decode = pipeline.decode

    def counting_decode(*args, **kwargs):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return real_decode(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(pipeline, "decode", counting_decode)
    monkeypatch.setattr(pipeline, "LARGE_DECODE_PIXELS", 0)  # every photo counts as large
    datas = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]
    results = BatchPreparer(MockEncoder(), {}, ImageLimits(decode_threads=4)).prepare_all(_inputs(datas))
    assert all(not isinstance(r, Exception) for r in results)
    assert peak == 1


def test_decoded_pixels_reads_the_header_at_the_draft_scale():
    data = (PHOTOS / "astronaut.jpg").read_bytes()
    full = images.decoded_pixels(data)
    assert full == images.decode(data, "astronaut").image.size[0] * images.decode(data, "astronaut").image.size[1]
    assert images.decoded_pixels(data, at_least=64) < full
    assert images.decoded_pixels(b"garbage") == images.UNKNOWN_PIXELS  # unknown counts as large


def test_a_failing_batch_is_taken_apart_to_find_whose_fault_it_is():
    """A crash on one image fails that image only; wrong answers for every image (a blank one
    too) fail every image; a model that crashes on everything, a blank image too, raises the
    batch's error (the caller retries the batch)."""
    import numpy as np
    import pytest

    from columnist.pipeline import ModelOutputError, embed_and_score_isolating
    from columnist.vocab.prompts import text_embeddings
    from tests.streams.worker.test_service import PoisonEncoder, space

    photos = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]  # the Hubble deep field is the poison
    poison = PoisonEncoder()
    prepared = BatchPreparer(poison, {}, ImageLimits()).prepare_all(_inputs(photos))
    vocabularies = [(space(1), text_embeddings(poison, space(1)))]
    hubble = [n for n, p in enumerate(sorted(PHOTOS.glob("*.jpg"))) if p.stem == "hubble_deep_field"]

    scored, failed = embed_and_score_isolating(prepared, vocabularies, poison)
    assert [position for position, _ in failed] == hubble and len(scored.images) == len(photos) - 1

    class WrongRows(MockEncoder):  # a test double: one row too few, for every batch
        def encode_prepared(self, prepared):
            return super().encode_prepared(prepared)[:-1] if len(prepared) > 1 else np.zeros((0, self.dim), np.float32)

    scored, failed = embed_and_score_isolating(prepared, vocabularies, WrongRows())
    assert scored is None and len(failed) == len(photos) and all(isinstance(e, ModelOutputError) for _, e in failed)

    with pytest.raises(RuntimeError, match="away"):
        embed_and_score_isolating(prepared, vocabularies, PoisonEncoder(down=100))
