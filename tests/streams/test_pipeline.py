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
    assert results[5] is results[1]  # the same bad content is not decoded twice
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
