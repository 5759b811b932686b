"""The Service in-process: the mock encoder, the real embedded engine, no Kafka. Dead letters
are collected in a list instead of being sent to a topic."""

from __future__ import annotations

import asyncio
import json
import shutil

import yaml

from columnist.models.mock import MockEncoder
from columnist.settings import Settings
from columnist.store import StoreUnavailable
from columnist.worker.events import vocab_event
from columnist.worker.fetch import FetchPolicy
from columnist.worker.ingest import RawEvent
from columnist.worker.service import Service
from columnist.vocab.schema import vocabulary_from_dict
from tests.conftest import PHOTOS, SPACE_YAML
from tests.hostile import MAX_BYTES, event


def space(version: int, edit=None):
    document = yaml.safe_load(SPACE_YAML.read_text())
    document["version"] = version
    if edit:
        edit(document)
    return vocabulary_from_dict(document, f"space v{version}")


def service_for(store, tmp_path, vocab) -> tuple[Service, list[dict]]:
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    letters: list[dict] = []

    async def send_dead_letter(value: bytes) -> None:
        letters.append(json.loads(value))

    policy = FetchPolicy([root.resolve()], max_bytes=MAX_BYTES)
    return Service(store, MockEncoder(), vocab, policy, send_dead_letter, Settings(replay_chunks=2)), letters


def photo_events(tmp_path) -> list[RawEvent]:
    events = []
    for i, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))):
        shutil.copy(photo, tmp_path / "images" / photo.name)
        events.append(RawEvent(event(photo.stem, (tmp_path / "images" / photo.name).as_uri()), 0, i))
    return events


def test_a_batch_is_stored_and_its_bad_events_dead_lettered(store, tmp_path):
    service, letters = service_for(store, tmp_path, space(1))

    async def scenario():
        await service.start()
        good = photo_events(tmp_path)
        bad = [RawEvent(b"{not json", 1, 0), RawEvent(None, 1, 1), RawEvent(event("gone", "file:///nope.jpg"), 1, 2)]
        await service.ingest(good[:3] + bad + good[3:])
        return good

    good = asyncio.run(scenario())
    _, rows = store.query("SELECT image_id FROM columnist.images FINAL ORDER BY image_id")
    assert [r[0] for r in rows] == sorted(p.stem for p in PHOTOS.glob("*.jpg"))
    assert store.count_scores("space", space(1).codes) == len(good) * len(space(1).codes)
    assert [(letter["partition"], letter["offset"]) for letter in letters] == [(1, 0), (1, 1), (1, 2)]
    assert "not valid JSON" in letters[0]["reason"] and "tombstone" in letters[1]["reason"]
    assert "outside the image roots" in letters[2]["reason"]
    assert service.counters.dead_letters == 3 and service.counters.images_encoded == len(good)


def test_vocabulary_events_are_applied_once_or_dead_lettered_with_a_reason(store, tmp_path):
    service, letters = service_for(store, tmp_path, space(1))
    v2 = space(2, lambda d: d["attributes"].append({"code": "porthole_view", "description": "a porthole"}))
    older = space(1, lambda d: d.update(description="an older edit"))
    other = vocabulary_from_dict({"name": "pets", "version": 5, "attributes": [{"code": "cat", "description": "a cat"}]})
    tampered = json.loads(vocab_event(space(3)))
    tampered["document"]["description"] = "changed after hashing"

    async def scenario():
        await service.start()
        await service.ingest(photo_events(tmp_path))
        for number, raw in enumerate([vocab_event(v2), vocab_event(v2), vocab_event(older), vocab_event(other),
                                      json.dumps(tampered).encode()]):
            await service.vocabulary_event(RawEvent(raw, 0, number))

    asyncio.run(scenario())
    assert store.applied_vocabulary("space").version == 2 and service.vocab.version == 2
    assert store.count_scores("space", ["porthole_view"]) == len(list(PHOTOS.glob("*.jpg")))
    assert [letter["offset"] for letter in letters] == [2, 4]  # the repeated v2 is not an error
    assert "v1 is older than the applied v2" in letters[0]["reason"]
    assert "does not match the document" in letters[1]["reason"]
    # another name is a vocabulary of its own, beside space, scored from the stored embeddings
    assert sorted(service.vocabs) == ["pets", "space"]
    assert store.count_scores("pets", ["cat"]) == len(list(PHOTOS.glob("*.jpg")))


class FlakyStore:
    """The real store, except that its first ``failures`` replays find ClickHouse unreachable
    (a stand-in for a server going away: the embedded engine cannot be stopped)."""

    def __init__(self, store, failures: int):
        self.store, self.failures = store, failures

    def replayer(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection refused (injected)")
        return self.store.replayer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_vocabulary_change_waits_for_the_store_and_then_applies(store, tmp_path):
    service, letters = service_for(FlakyStore(store, failures=2), tmp_path, space(1))
    v2 = space(2, lambda d: d["attributes"].append({"code": "porthole_view", "description": "a porthole"}))

    async def scenario():
        await service.start()  # (v1 goes through a replayer too: it takes the two failures)
        await service.vocabulary_event(RawEvent(vocab_event(v2), 0, 0))

    asyncio.run(scenario())
    assert letters == [] and store.applied_vocabulary("space").version == 2


def test_two_workers_on_one_store_split_a_vocabulary_change_and_miss_no_image(store, tmp_path):
    """Two Services on ONE embedded store (what N workers on a ClickHouse server are): both
    receive the change, the chunks are split between them, every image gets the attribute."""
    first, _ = service_for(store, tmp_path, space(1))
    second, _ = service_for(store, tmp_path, space(1))
    first.replay_start, second.replay_start = 0, 4  # apart in the ring of 8 chunks (Settings(replay_chunks=2)*4)
    for service in (first, second):
        service.settings = Settings(replay_chunks=8)
    v2 = space(2, lambda d: d["attributes"].append({"code": "porthole_view", "description": "a porthole"}))

    async def scenario():
        await first.start()
        await second.start()
        photos = photo_events(tmp_path)
        copies = [RawEvent(event(f"copy{n:03d}", json.loads(photos[n % len(photos)].value)["uri"]), 0, n)
                  for n in range(80)]
        await first.ingest(copies[:40])
        await second.ingest(copies[40:])
        for service in (first, second):
            service.counters.replay_chunks_written = 0  # (the first applied v1 at start: chunks of nothing)
        await asyncio.gather(first.vocabulary_event(RawEvent(vocab_event(v2), 0, 0)),
                             second.vocabulary_event(RawEvent(vocab_event(v2), 0, 0)))

    asyncio.run(scenario())
    assert store.count_scores("space", ["porthole_view"]) == 80
    written = (first.counters.replay_chunks_written, second.counters.replay_chunks_written)
    assert min(written) > 0 and sum(written) <= 8 + 2, written  # split, not done twice over
    assert first.vocab.version == second.vocab.version == 2


def test_a_worker_behind_another_never_rolls_the_store_back(store, tmp_path):
    """Two workers on one store: the first has applied v3 already when the second, still on
    v2, receives v3's predecessor... and then v3: the store never goes back, the second
    catches up without replaying again."""
    ahead, _ = service_for(store, tmp_path, space(1))
    behind, letters = service_for(store, tmp_path, space(1))
    v2 = space(2, lambda d: d["attributes"].append({"code": "porthole_view", "description": "a porthole"}))
    v3 = space(3, lambda d: d["attributes"].append({"code": "porthole_view", "description": "a round window"}))

    async def scenario():
        await ahead.start()
        await behind.start()
        await ahead.ingest(photo_events(tmp_path))
        await ahead.vocabulary_event(RawEvent(vocab_event(v2), 0, 0))
        await ahead.vocabulary_event(RawEvent(vocab_event(v3), 0, 1))
        await behind.vocabulary_event(RawEvent(vocab_event(v2), 0, 0))  # late: the store is at v3 already
        await behind.vocabulary_event(RawEvent(vocab_event(v3), 0, 1))

    asyncio.run(scenario())
    assert store.applied_vocabulary("space").version == 3
    assert behind.vocab.version == 3 and behind.counters.replay_chunks_written == 0
    assert "older than the applied v3" in letters[0]["reason"] and len(letters) == 1
    _, versions = store.query("SELECT DISTINCT vocab_version FROM columnist.feature_image_attribute FINAL "
                              "WHERE attribute = 'porthole_view'")
    assert versions == [(3,)]


def test_a_cancelled_job_is_not_retried(store, tmp_path):
    """Stopping the worker cancels what it awaits; a retry loop must let that through."""
    service, _ = service_for(store, tmp_path, space(1))
    attempts = []

    async def scenario():
        async def job():
            attempts.append(1)
            raise asyncio.CancelledError()

        try:
            await service._until_done(job, "a job the worker's stop cancels")
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(scenario()) == "cancelled" and attempts == [1]
