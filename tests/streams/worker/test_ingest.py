"""Ingest preparation under hostile input: every bad event becomes a reason, every good one
an image, and a batch never holds more than one full-size decoded image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from columnist.models.mock import MockEncoder
from columnist.kafka.events import dead_letter
from columnist.worker.fetch import FetchPolicy
from columnist.records import Counters, ImageLimits, RawEvent
from columnist.worker.ingest import prepare_events
from tests.conftest import PHOTOS
from tests.hostile import MAX_BYTES, event, image_cases


def test_every_hostile_event_is_rejected_with_its_reason_and_the_good_ones_go_on(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    cases = image_cases(root, outside)
    photos = sorted(PHOTOS.glob("*.jpg"))
    for photo in photos:
        shutil.copy(photo, root / photo.name)
    good = [RawEvent(event(f"good-{p.stem}", (root / p.name).as_uri()), 0, i, f"good-{p.stem}".encode())
            for i, p in enumerate(photos)]
    bad = [RawEvent(case.event, 0, 100 + i, case.key) for i, case in enumerate(cases)]
    mixed = [e for pair in zip(bad, good) for e in pair] + bad[len(good):]
    policy = FetchPolicy([root.resolve()], max_bytes=MAX_BYTES, http_timeout=2)

    prepared = prepare_events(mixed, MockEncoder(), policy, Counters(), ImageLimits())

    assert [p.record.image_id for p in prepared.images] == [f"good-{p.stem}" for p in photos]
    reasons = {r.event.offset: str(r.error) for r in prepared.rejected}
    assert len(reasons) == len(cases)
    for i, case in enumerate(cases):
        assert case.reason in reasons[100 + i], (case.name, reasons[100 + i])
    assert "secret" not in reasons[100 + [c.name for c in cases].index("a symlink out of the roots")]
    for rejected in prepared.rejected:  # every dead letter fits in a Kafka message
        letter = dead_letter(rejected.event.value, "columnist.images", rejected.error, 0, rejected.event.offset)
        assert len(letter) < 1_000_000 and json.loads(letter)["reason"]


def test_dead_letters_of_huge_events_are_bounded_and_keep_a_hash():
    raw = b'{"x": "' + b'\\"' * 700_000 + b'"}'
    letter = json.loads(dead_letter(raw, "columnist.images", ValueError("too big"), 3, 77))
    assert letter["event_truncated"] and letter["event_bytes"] == len(raw) and len(letter["event_sha256"]) == 64
    assert (letter["partition"], letter["offset"]) == (3, 77)
    assert len(json.dumps(letter)) < 200_000


LARGE_PNGS = """
import resource, sys
from pathlib import Path
from PIL import Image, PngImagePlugin
from columnist.models.registry import load_encoder
from columnist.worker.fetch import FetchPolicy
from columnist.records import Counters, ImageLimits, RawEvent
from columnist.worker.ingest import prepare_events
from tests.hostile import event
root = Path(sys.argv[1])
encoder = load_encoder("tiny-clip")
encoder.encode_images([Image.new("RGB", (300, 200))])  # the model is loaded before the baseline
events = [RawEvent(event(f"zeros{i}", (root / f"zeros{i}.png").as_uri())) for i in range(8)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepared = prepare_events(events, encoder, FetchPolicy([root]), Counters(), ImageLimits())
assert len(prepared.images) == 8, prepared.rejected
print(before // 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_batch_of_large_images_holds_one_decoded_image_at_a_time(tmp_path):
    """Eight 7700x7700 PNGs of zeros (173 kB each, 178 MB decoded): kept all at once they
    would take over 1.4 GB; prepared one at a time, the peak grows by a few hundred MB."""
    from PIL import Image

    image = Image.new("RGB", (7700, 7700))
    image.save(tmp_path / "zeros0.png", compress_level=9)
    del image
    for i in range(1, 8):
        shutil.copy(tmp_path / "zeros0.png", tmp_path / f"zeros{i}.png")
    run = subprocess.run([sys.executable, "-c", LARGE_PNGS, str(tmp_path.resolve())], capture_output=True, text=True,
                         timeout=300, cwd=PHOTOS.parent.parent.parent)
    assert run.returncode == 0, run.stderr
    before_mb, peak_mb = map(int, run.stdout.split())
    assert peak_mb - before_mb < 700, (before_mb, peak_mb)


def test_a_worker_out_of_file_descriptors_retries_the_batch_instead_of_dead_lettering(tmp_path):
    import os
    import resource

    import pytest

    from columnist.worker.fetch import WorkerOutOfResources

    shutil.copy(sorted(PHOTOS.glob("*.jpg"))[0], tmp_path / "a.jpg")
    events = [RawEvent(event("a", (tmp_path / "a.jpg").as_uri()))]
    policy = FetchPolicy([tmp_path.resolve()])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(map(int, os.listdir("/proc/self/fd"))) + 16, hard))
    hogs = []
    try:
        while True:  # take every descriptor left, as a flood of connections would
            hogs.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    try:
        with pytest.raises(WorkerOutOfResources, match="a.jpg"):
            prepare_events(events, MockEncoder(), policy, Counters(), ImageLimits())
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_unkeyed_events_are_taken_and_counted():
    """An event without a Kafka key is in order only on a topic of one partition: taken, counted."""
    photo = sorted(PHOTOS.glob("*.jpg"))[0].resolve()
    uri = photo.as_uri()
    events = [RawEvent(event("a", uri), 0, 0, b"a"), RawEvent(event("b", uri), 0, 1), RawEvent(event("c", uri), 0, 2)]
    counters = Counters()

    prepared = prepare_events(events, MockEncoder(), FetchPolicy([photo.parent]), counters, ImageLimits())

    assert [p.record.image_id for p in prepared.images] == ["a", "b", "c"] and prepared.rejected == []
    assert counters.events_unkeyed == 2
