"""The deadline on decoding a file: a stuck decode lists the file's content and ends the process
with code 7, and from then on that content is refused without being decoded (the batch comes
again and is stored without it). The process's exit is replaced here (or pytest would end);
the Kafka test of the worker exits for real."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import pytest

from columnist import decode_watch, watchdog
from columnist.errors import DECODE_STUCK
from columnist.models.images import ImageError
from columnist.models.mock import MockEncoder
from columnist.pipeline import BatchPreparer
from columnist.records import ImageInput, ImageLimits

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "data" / "photos").glob("*.jpg"))


@pytest.fixture
def exits(monkeypatch):
    """The codes the process would have exited with; each exit releases the stuck decode, and
    holds the watchdog (as a real exit would end it) until the test is over."""
    released, over, codes = threading.Event(), threading.Event(), []
    monkeypatch.setattr(decode_watch, "_exit", lambda code: (codes.append(code), released.set(), over.wait(30)))
    monkeypatch.setattr(watchdog, "POLL_S", 0.02)
    yield codes, released
    over.set()


def test_a_decode_past_its_deadline_lists_its_content_and_ends_the_process(exits, caplog, tmp_path):
    codes, released = exits
    decode_watch.configure(tmp_path / "run")
    with caplog.at_level(logging.CRITICAL, "columnist.decode"):
        with decode_watch.decoding("crafted\nname.heic", "ab" * 32, 0.05):
            assert released.wait(10), "the deadline never came"
    assert codes == [DECODE_STUCK]
    line = caplog.records[-1].getMessage()
    assert "decoding crafted\\nname.heic did not end within its deadline" in line
    assert "will not be decoded again" in line and "in test_a_decode_past" in line  # the stuck thread's stack
    assert (tmp_path / "run" / "decode-stuck.txt").read_text() == f"{'ab' * 32} crafted\\nname.heic\n"
    assert decode_watch.refused("ab" * 32) and not decode_watch.refused("cd" * 32)


def test_a_decode_in_time_or_unbounded_leaves_nothing(exits, tmp_path):
    codes, _ = exits
    for seconds in (5.0, 0.0, float("inf")):
        with decode_watch.decoding("photo.jpg", "ab" * 32, seconds):
            pass
    assert codes == [] and not decode_watch._watchdog.under_way
    assert not (tmp_path / "run" / "decode-stuck.txt").exists() and not decode_watch.refused("ab" * 32)


def test_the_list_is_read_again_when_another_process_adds_to_it(tmp_path):
    listed = tmp_path / "run" / "decode-stuck.txt"
    listed.parent.mkdir()
    listed.write_text("not a hash at all\n\n" + "ef" * 32 + "\n")
    assert decode_watch.refused("ef" * 32) and not decode_watch.refused("not")
    listed.write_text(listed.read_text() + "12" * 32 + " raw.dng added by another worker\n")
    assert decode_watch.refused("12" * 32)


def test_a_listed_content_is_refused_without_decoding_and_the_rest_of_the_batch_is_prepared(tmp_path):
    data = [path.read_bytes() for path in PHOTOS[:3]]
    sha = [hashlib.sha256(d).hexdigest() for d in data]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "decode-stuck.txt").write_text(f"{sha[1]} {PHOTOS[1].name}\n")
    items = [ImageInput(d, s, p.name, p.stem, p.as_uri()) for d, p, s in zip(data, PHOTOS, sha)]
    outcome = BatchPreparer(MockEncoder(), {}, ImageLimits(decode_threads=1)).prepare_all(items)
    assert isinstance(outcome[1], ImageError) and "overran COLUMNIST_DECODE_TIMEOUT before" in str(outcome[1])
    assert PHOTOS[1].name in str(outcome[1])
    assert [type(o).__name__ for o in outcome[::2]] == ["PreparedImage"] * 2


def test_a_gallery_shows_no_thumbnail_of_a_listed_content(tmp_path, monkeypatch):
    """A stored file changed since into one whose decoding got stuck is not decoded for a page;
    the others are decoded within the deadline set."""
    from columnist.workbench.gallery import thumbnail

    deadlines, decoding = [], decode_watch.decoding
    monkeypatch.setattr(decode_watch, "decoding", lambda name, sha256, seconds: (deadlines.append(seconds),
                                                                                 decoding(name, sha256, seconds))[1])
    monkeypatch.setenv("COLUMNIST_DECODE_TIMEOUT", "7")
    photo = PHOTOS[0]
    assert thumbnail("a", photo.as_uri()).startswith("data:image/jpeg;base64,") and deadlines == [7.0]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "decode-stuck.txt").write_text(f"{hashlib.sha256(photo.read_bytes()).hexdigest()} x\n")
    assert thumbnail("a", photo.as_uri()) is None


def test_time_the_process_was_stopped_is_not_counted_against_a_decode(exits, stopped_clock):
    codes, released = exits
    with decode_watch.decoding("hubble.jpg", "ab" * 32, 3.0):
        stopped_clock.stopped_for = 30.0  # Ctrl-Z for 30 s, then fg: at most OVERSLEPT_S of it counts
        assert not released.wait(0.5)  # the watchdog woke several times meanwhile
    assert codes == [] and not decode_watch.refused("ab" * 32)


def test_waiting_for_a_large_decode_before_it_is_not_counted(exits, monkeypatch):
    """Large images and videos decode one at a time; the one waiting its turn is not stuck."""
    import columnist.pipeline as pipeline

    codes, released = exits
    monkeypatch.setattr(pipeline, "LARGE_DECODE_PIXELS", 0)  # every image takes the large decodes' turn
    done = []
    with pipeline._large_decode:
        waiting = threading.Thread(target=lambda: done.append(pipeline.prepare(
            PHOTOS[0].read_bytes(), PHOTOS[0].name, MockEncoder(), "a", PHOTOS[0].as_uri(),
            limits=ImageLimits(decode_timeout=0.3))))
        waiting.start()
        assert not released.wait(1.0)  # three deadlines' time in the queue
    waiting.join(10)
    assert codes == [] and len(done) == 1


def test_the_whole_list_is_read_and_anything_but_a_file_is_no_list(tmp_path):
    import os

    listed = tmp_path / "run" / "decode-stuck.txt"
    listed.parent.mkdir()
    listed.write_text("garbage that is no hash at all\n" * 250_000 + "12" * 32 + " the last line\n")  # 7.8 MB
    assert decode_watch.refused("12" * 32)
    listed.unlink()
    os.mkfifo(listed)  # opening it to read would wait for a writer for ever
    answers = []
    asked = threading.Thread(target=lambda: answers.append(decode_watch.refused("12" * 32)), daemon=True)
    asked.start()
    asked.join(10)
    assert answers == [False]  # what the list said before is forgotten too


def test_a_stuck_decode_ends_the_process_even_when_its_list_cannot_be_written(exits, caplog, tmp_path):
    import os

    codes, released = exits
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "decode-stuck.txt")  # opening it to write would wait for a reader for ever
    with caplog.at_level(logging.CRITICAL, "columnist.decode"):
        with decode_watch.decoding("crafted.heic", "ab" * 32, 0.05):
            assert released.wait(10), "the exit never came"
    assert codes == [DECODE_STUCK]
    line = caplog.records[-1].getMessage()  # no reader: "No such device or address"
    assert "decode-stuck.txt failed (" in line and "): it will be decoded again" in line
