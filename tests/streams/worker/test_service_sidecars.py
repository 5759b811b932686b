"""A worker that keeps XMP sidecars current (COLUMNIST_SIDECARS), in-process: sidecars appear
beside the images it stores, and follow a vocabulary change without a command."""

from __future__ import annotations

import asyncio

import pytest

from tests.streams.test_sidecars import subjects, xmp  # noqa: F401 - skips without libexempi
from tests.streams.worker.scripted_source import ScriptedSource
from tests.streams.worker.test_service import photo_events, service_for, space, vocabulary

pytestmark = pytest.mark.integration


def test_sidecars_appear_beside_stored_images_and_follow_a_stricter_vocabulary(store, tmp_path):
    service = service_for(store, tmp_path, space(1), sidecars="accepted")
    photos = photo_events(tmp_path)
    asyncio.run(service.run(ScriptedSource(photos)))
    service.sidecar_executor.submit(lambda: None).result(60)  # the sidecar thread has done what it was given
    images = tmp_path / "images"
    written = sorted(p.name for p in images.glob("*.xmp"))
    assert written and len(written) == service.counters.sidecars_written
    before = {p.name: subjects(p) for p in images.glob("*.xmp")}

    def strict(document):
        document["thresholds"] = {"accept": 0.99, "reject": 0.05}
        for entry in document["attributes"] + document.get("derived", []):
            entry.pop("thresholds", None)
    asyncio.run(service.run(ScriptedSource(vocabulary(space(2, strict)))))
    service.sidecar_executor.submit(lambda: None).result(60)
    after = {p.name: subjects(p) for p in images.glob("*.xmp")}
    assert sum(map(len, after.values())) < sum(map(len, before.values()))
    assert all(set(after[name]) <= set(before[name]) for name in after)  # only removals: the thresholds rose
