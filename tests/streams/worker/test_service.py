"""The Service's loop in-process (Service.run): the mock encoder, the real embedded engine and
a scripted source in place of Kafka. What Kafka's adapter relies on is proven here without a
broker: a batch is acked only once stored, a failed write is retried and never acked
meanwhile, a cancelled batch is not acked, the next batch is prepared while one is stored,
and vocabulary documents are applied (or dead-lettered) beside ingest."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading

import yaml

from bench import media as made
from columnist.kafka.events import delete_event, vocab_event
from columnist.models.mock import MockEncoder
from columnist.records import RawEvent
from columnist.settings import Settings
from columnist.store import StoreUnavailable
from columnist.vocab.schema import vocabulary_from_dict
from columnist.worker.fetch import FetchPolicy
from columnist.worker import service as service_module
from columnist.worker.service import Service
from tests.conftest import PHOTOS, SPACE_YAML
from tests.hostile import MAX_BYTES, event
from tests.streams.worker.scripted_source import Gate, ScriptedSource, Vocab

WAIT = 60
"""Seconds a gate waits before the test calls it a deadlock (a bound, never a synchronisation)."""


def space(version: int, edit=None):
    document = yaml.safe_load(SPACE_YAML.read_text())
    document["version"] = version
    if edit:
        edit(document)
    return vocabulary_from_dict(document, f"space v{version}")


def with_porthole(version: int = 2, description: str = "a porthole"):
    return space(version, lambda d: d["attributes"].append({"code": "porthole_view", "description": description}))


def service_for(store, tmp_path, vocab, encoder=None, load_model=None, **settings) -> Service:
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    policy = FetchPolicy([root.resolve()], max_bytes=MAX_BYTES)
    service = Service(store, encoder or MockEncoder(), vocab, policy, Settings(**{"replay_chunks": 2, **settings}),
                      load_model)
    service.start()
    return service


def photo_events(tmp_path, prefix: str = "", offset: int = 0) -> list[RawEvent]:
    events = []
    for i, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))):
        shutil.copy(photo, tmp_path / "images" / photo.name)
        events.append(RawEvent(event(prefix + photo.stem, (tmp_path / "images" / photo.name).as_uri()), 0, offset + i))
    return events


def vocabulary(vocab) -> Vocab:
    return Vocab(RawEvent(vocab_event(vocab), 0, 0))


def stored_ids(store) -> list[str]:
    return [r[0] for r in store.query("SELECT image_id FROM columnist.images FINAL ORDER BY image_id")[1]]


class StoreWrapper:
    """The real store, with ``write`` wrapped by a test (a stand-in for ClickHouse misbehaving:
    the embedded engine cannot be stopped or slowed from outside)."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_batch_is_stored_and_its_bad_events_dead_lettered(store, tmp_path):
    service = service_for(store, tmp_path, space(1))
    good = photo_events(tmp_path)
    bad = [RawEvent(b"{not json", 1, 0), RawEvent(None, 1, 1), RawEvent(event("gone", "file:///nope.jpg"), 1, 2)]
    source = ScriptedSource(good[:3] + bad + good[3:])

    asyncio.run(service.run(source))

    assert stored_ids(store) == sorted(p.stem for p in PHOTOS.glob("*.jpg"))
    assert store.count_scores("space", space(1).codes) == len(good) * len(space(1).codes)
    assert [(letter["partition"], letter["offset"]) for letter in source.letters] == [(1, 0), (1, 1), (1, 2)]
    assert "not valid JSON" in source.letters[0]["reason"] and "tombstone" in source.letters[1]["reason"]
    assert "outside the image roots" in source.letters[2]["reason"]
    assert service.counters.dead_letters == 3 and service.counters.images_encoded == len(good)
    assert source.acked == [0]


def test_a_batch_prepared_again_after_a_store_failure_counts_its_events_once(store, tmp_path):
    """The store cannot say which contents it has on the first attempt: the batch is prepared
    again, and its unkeyed events, refused key and decodes are counted once, not per attempt."""
    wrapper = StoreWrapper(store)
    failures = [StoreUnavailable("connection refused (injected)")]

    def known_images(*args):
        if failures:
            raise failures.pop()
        return store.known_images(*args)

    wrapper.known_images = known_images
    service = service_for(wrapper, tmp_path, space(1))
    photos = photo_events(tmp_path)[:3]
    keyed = [RawEvent(e.value, e.partition, e.offset, json.loads(e.value)["image_id"].encode()) for e in photos[:2]]
    wrong = RawEvent(event("wrong", json.loads(photos[2].value)["uri"]), 0, 3, b"someone-else")
    source = ScriptedSource([*keyed, photos[2], wrong])

    asyncio.run(service.run(source))

    assert service.counters.batch_retries == 1 and not failures
    assert (service.counters.events_unkeyed, service.counters.images_failed, service.counters.images_decoded) == (1, 1, 3)
    assert len(source.letters) == 1 and "not keyed by its image_id" in source.letters[0]["reason"]
    assert source.letters[0]["key"] == "someone-else" and source.letters[0]["image_id"] == "wrong"


def test_unkeyed_events_are_taken_counted_and_warned_about_once(store, tmp_path, caplog):
    service = service_for(store, tmp_path, space(1))
    source = ScriptedSource(photo_events(tmp_path)[:2], photo_events(tmp_path, "b-")[:2])  # RawEvents without keys

    asyncio.run(service.run(source))

    assert len(stored_ids(store)) == 4 and service.counters.events_unkeyed == 4 and source.acked == [0, 1]
    assert len([r for r in caplog.records if "without a Kafka key" in r.getMessage()]) == 1


def test_identical_content_in_one_batch_is_decoded_and_encoded_once(store, tmp_path):
    service = service_for(store, tmp_path, space(1))
    photo = photo_events(tmp_path)[0]
    uri = json.loads(photo.value)["uri"]
    copies = [RawEvent(event(f"copy{n:02d}", uri), 0, n) for n in range(14)]

    asyncio.run(service.run(ScriptedSource(copies)))

    counters = service.counters
    assert (counters.images_decoded, counters.images_encoded, counters.images_reused) == (1, 1, 13)
    assert counters.images_stored == 14 and len(stored_ids(store)) == 14


def test_a_batch_is_acked_only_after_it_is_stored_and_a_failed_write_is_retried(store, tmp_path):
    """The first two writes find ClickHouse unreachable: the batch is written on the third
    attempt, acked after it, and no later batch is acked before it."""
    seen_at_ack: list[int] = []
    wrapper = StoreWrapper(store)
    failures = [StoreUnavailable("connection refused (injected)")] * 2

    def write(batch):
        if failures:
            raise failures.pop()
        return store.write(batch)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1), write_group=1)  # each batch written on its own
    source = ScriptedSource(photo_events(tmp_path)[:3], photo_events(tmp_path, "b-")[:3],
                            on_ack=lambda _: seen_at_ack.append(len(stored_ids(store))))

    asyncio.run(service.run(source))

    assert source.acked == [0, 1] and seen_at_ack == [3, 6]
    assert service.counters.batch_retries == 2 and service.counters.store_retries == 2


def test_the_next_batch_is_prepared_while_this_one_is_written(store, tmp_path):
    """The first batch's write waits until the second batch is being prepared (its contents
    looked up in the store): a loop that prepared only after writing would never get there."""
    second_prepared, waited = threading.Event(), []
    wrapper = StoreWrapper(store)

    def stored_content(model, ids):
        if any(i.startswith("b-") for i in ids):
            second_prepared.set()
        return store.stored_content(model, ids)

    def write(batch):
        if batch.images[0].image_id.startswith("a-"):
            waited.append(second_prepared.wait(WAIT))
        return store.write(batch)

    wrapper.stored_content, wrapper.write = stored_content, write
    service = service_for(wrapper, tmp_path, space(1))
    source = ScriptedSource(photo_events(tmp_path, "a-")[:3], photo_events(tmp_path, "b-")[:3])

    asyncio.run(service.run(source))

    assert waited == [True] and source.acked == [0, 1]


def test_the_next_batch_is_encoded_while_this_one_is_written(store, tmp_path):
    """The model does not wait for the store: the first batch's write waits until the second
    batch is being encoded (a loop that encoded only after writing would never get there),
    and the batches are still written and acked in order."""
    second_encoding, waited, written = threading.Event(), [], []
    wrapper = StoreWrapper(store)

    class SignallingEncoder(MockEncoder):  # a test double: tells the test when it encodes a second batch
        calls = 0

        def encode_prepared(self, prepared):
            self.calls += 1
            if self.calls == 2:
                second_encoding.set()
            return super().encode_prepared(prepared)

    def write(batch):
        if batch.images[0].image_id.startswith("a-"):
            waited.append(second_encoding.wait(WAIT))
        written.append(batch.images[0].image_id[:2])
        return store.write(batch)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1), encoder=SignallingEncoder(),
                          write_group=1)  # each batch written on its own
    source = ScriptedSource(photo_events(tmp_path, "a-")[:3], photo_events(tmp_path, "b-")[:3],
                            photo_events(tmp_path, "c-")[:3])

    asyncio.run(service.run(source))

    assert waited == [True] and written == ["a-", "b-", "c-"] and source.acked == [0, 1, 2]
    assert len(stored_ids(store)) == 9


def test_a_vocabulary_switch_waits_for_the_batches_scored_before_it_to_be_written(store, tmp_path):
    """A batch scored with v1 and still being written when v2 arrives: the switch waits for
    that write (here the write goes on only once the switch waits for it), so the batch is
    stored under v1 before the switch and v2's replay scores it."""
    switch_waits, waited, versions = threading.Event(), [], []
    wrapper = StoreWrapper(store)

    class Watched(asyncio.Event):  # a test double: the service's "all written" event, telling when a switch waits
        async def wait(self):
            switch_waits.set()
            return await super().wait()

    def write(batch):
        waited.append(switch_waits.wait(WAIT))
        versions.append(service.vocab.version)
        return store.write(batch)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1))
    service._all_written = Watched()
    service._all_written.set()
    source = ScriptedSource(photo_events(tmp_path, "a-")[:3], vocabulary(with_porthole()))

    asyncio.run(service.run(source))

    assert waited == [True] and versions == [1] and source.acked == [0]
    assert service.vocab.version == 2 and store.count_scores("space", ["porthole_view"]) == 3


def test_the_model_is_warmed_up_at_start_before_the_first_batch_is_encoded(store, tmp_path):
    calls = []

    class Warming(MockEncoder):  # a test double: records what its image tower is asked
        def warm_up(self):
            calls.append("warm up")

        def encode_prepared(self, prepared):
            calls.append(len(prepared))
            return super().encode_prepared(prepared)

    service = service_for(store, tmp_path, space(1), encoder=Warming())
    asyncio.run(service.run(ScriptedSource(photo_events(tmp_path)[:2])))

    assert calls == ["warm up", 2]


class PoisonEncoder(MockEncoder):
    """A test double: a runtime that crashes on one photo (the Hubble deep field's size), and on
    every image for its first ``down`` calls (a runtime briefly unavailable)."""

    def __init__(self, down: int = 0):
        super().__init__()
        self.down = down

    def prepare_image(self, image):
        vector = super().prepare_image(image)
        if image.size == (320, 279):
            vector[0] = 123.0
        return vector

    def encode_prepared(self, prepared):
        if self.down > 0:
            self.down -= 1
            raise RuntimeError("the runtime is away (injected)")
        if any(tensor[0] == 123.0 for tensor in prepared):
            raise RuntimeError("the runtime crashed on this image (injected)")
        return super().encode_prepared(prepared)


def test_an_image_the_model_crashes_on_is_dead_lettered_and_its_batch_mates_stored(store, tmp_path):
    """Found attacking the worker: a runtime error on one image (not a wrong answer: a crash)
    retried its whole batch for ever, and ingest stopped behind it."""
    service = service_for(store, tmp_path, space(1), encoder=PoisonEncoder())
    source = ScriptedSource(photo_events(tmp_path, "a-"), photo_events(tmp_path, "b-")[:2])

    asyncio.run(asyncio.wait_for(service.run(source), WAIT))

    assert source.acked == [0, 1] and [letter["image_id"] for letter in source.letters] == ["a-hubble_deep_field"]
    assert "crashed on this image" in source.letters[0]["reason"]
    assert len(stored_ids(store)) == 8 and "a-hubble_deep_field" not in stored_ids(store)


def test_a_model_failing_on_every_image_and_a_blank_one_is_retried_not_dead_lettered(store, tmp_path):
    service = service_for(store, tmp_path, space(1), encoder=PoisonEncoder(down=5))
    source = ScriptedSource(photo_events(tmp_path)[:3])

    asyncio.run(asyncio.wait_for(service.run(source), WAIT))

    assert source.letters == [] and source.acked == [0] and len(stored_ids(store)) == 3
    assert service.counters.batch_retries >= 1


def test_a_batch_whose_write_fails_holds_back_the_ones_after_it(store, tmp_path):
    """Only the first batch's write fails, twice: the second, encoded meanwhile, is written and
    acked only after it (the store never holds a batch whose predecessor it lacks)."""
    failures, written = [StoreUnavailable("connection refused (injected)")] * 2, []
    wrapper = StoreWrapper(store)

    def write(batch):
        first = batch.images[0].image_id[:2]
        if first == "a-" and failures:
            raise failures.pop()
        written.append(first)
        return store.write(batch)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1), write_group=1)  # each batch written on its own
    source = ScriptedSource(photo_events(tmp_path, "a-")[:3], photo_events(tmp_path, "b-")[:3])

    asyncio.run(service.run(source))

    assert written == ["a-", "b-"] and source.acked == [0, 1] and service.counters.store_retries == 2


def test_a_busy_worker_writes_the_batches_on_their_way_together_and_retries_them_as_one(store, tmp_path,
                                                                                      monkeypatch):
    """Eight full batches all waiting in the source (a backlog): a scored batch waits for those
    already on their way, and up to four are written in one set of statements (the first attempt
    refused, the group retried whole); each batch is acked in order once its rows are stored,
    and every image's scores are its own (the same photo scores the same in any batch)."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)  # no write goes early by the clock
    writes, failures, missing_at_ack = [], [StoreUnavailable("connection refused (injected)")], []
    wrapper = StoreWrapper(store)

    def write(batch):
        if failures:
            raise failures.pop()
        writes.append([image.image_id for image in batch.images])
        return store.write(batch)


    def on_ack(position):
        ids = {json.loads(e.value)["image_id"] for e in batches[position]}
        missing_at_ack.append(sorted(ids - set(stored_ids(store))))

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=3)
    batches = [(photo_events(tmp_path, f"{p}-", 10 * n) * 2)[n:n + 3] for n, p in enumerate("abcdefgh")]  # photos vary
    source = ScriptedSource(*batches, on_ack=on_ack)

    asyncio.run(service.run(source))

    assert [len(w) for w in writes] == [12, 12]  # four batches a write, in the batches' order
    assert [i for w in writes for i in w] == [json.loads(e.value)["image_id"] for b in batches for e in b]
    assert source.acked == list(range(8)) and missing_at_ack == [[]] * 8 and service.counters.store_retries == 1
    assert service.counters.images_stored == 24 and len(stored_ids(store)) == 24
    for code in space(1).codes[:3]:
        by_photo = {}
        for image_id, score, _ in store.attribute_scores("space", code):
            by_photo.setdefault(image_id.split("-", 1)[1], []).append(score)
        assert len(by_photo) == 7 and all(max(s) - min(s) < 1e-5 for s in by_photo.values()), by_photo


def test_an_idle_worker_writes_each_batch_at_once(store, tmp_path, monkeypatch):
    """Each batch comes only once the one before is acked: nothing is on its way, so no write
    waits (were one to wait for a batch that is not coming, the gate would time out)."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    writes = []
    wrapper = StoreWrapper(store)
    wrapper.write = lambda batch: (writes.append(len(batch.images)), store.write(batch))[1]
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=3)

    async def run():
        events = {position: asyncio.Event() for position in (0, 2, 4)}  # by position in the script
        def acked(position):
            return Gate(lambda: asyncio.wait_for(events[position].wait(), WAIT))
        source = ScriptedSource(photo_events(tmp_path, "a-")[:3], acked(0), photo_events(tmp_path, "b-")[:3], acked(2),
                                photo_events(tmp_path, "c-")[:3], on_ack=lambda position: events[position].set())
        await service.run(source)
        return source

    source = asyncio.run(run())

    assert writes == [3, 3, 3] and source.acked == [0, 2, 4]


def test_a_worker_that_keeps_up_does_not_wait_for_batches_that_came_before_they_filled(store, tmp_path, monkeypatch):
    """Batches of two where three fill one: the source had no backlog (Kafka gave what it had),
    so however many are on their way, each batch is written at once, alone."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    writes = []
    wrapper = StoreWrapper(store)
    wrapper.write = lambda batch: (writes.append(len(batch.images)), store.write(batch))[1]
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=3)
    source = ScriptedSource(*[photo_events(tmp_path, f"{p}-", 10 * n)[:2] for n, p in enumerate("abcd")])

    asyncio.run(service.run(source))

    assert writes == [2, 2, 2, 2] and source.acked == [0, 1, 2, 3]

def test_a_batch_that_deletes_is_not_written_with_the_batch_before_it(store, tmp_path, monkeypatch):
    """A group's deletions go before its rows: a batch deleting an image the batch before it
    stores must not join that batch's write, or the image would be stored after its deletion."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    writes = []
    wrapper = StoreWrapper(store)
    wrapper.write = lambda batch: (writes.append(len(batch.images)), store.write(batch))[1]
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=3)
    first = photo_events(tmp_path, "a-")[:3]
    gone = json.loads(first[1].value)["image_id"]
    deleting = [RawEvent(delete_event(gone), 0, 3, gone.encode())] + photo_events(tmp_path, "b-", 4)[:2]
    source = ScriptedSource(first, deleting, photo_events(tmp_path, "c-", 6)[:3])

    asyncio.run(service.run(source))

    assert gone not in stored_ids(store) and len(stored_ids(store)) == 7
    assert writes == [3, 5] and source.acked == [0, 1, 2]  # the deleting batch and the one after it together


def test_a_batch_storing_an_id_the_write_before_it_stores_is_not_written_with_it(store, tmp_path, monkeypatch):
    """Found in review: a video, then a still under the same id in the next batch. Written in one
    write, the video's frames counted as the new ones and stayed (with their embeddings and
    scores) beside a still. One write never holds an id twice, so the still replaces them."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    writes = []
    wrapper = StoreWrapper(store)
    wrapper.write = lambda batch: (writes.append(len(batch.images)), store.write(batch))[1]
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=2)
    clip = made.video(tmp_path / "images" / "launch.mp4")
    photos = photo_events(tmp_path)
    still = json.loads(photos[1].value)["uri"]
    first = [RawEvent(event("x", clip.as_uri()), 0, 0, b"x"), photos[0]]
    second = [RawEvent(event("x", still), 0, 2, b"x"), photos[2]]

    source = ScriptedSource(first, second)

    asyncio.run(service.run(source))

    assert store.query("SELECT count() FROM columnist.video_frames FINAL WHERE video_id = 'x'")[1] == [(0,)]
    assert store.query("SELECT kind FROM columnist.images FINAL WHERE image_id = 'x'")[1] == [("image",)]
    assert writes == [2, 2] and source.acked == [0, 1]


def test_dead_letters_of_batches_written_together_leave_in_the_order_of_their_events(store, tmp_path, monkeypatch):
    """Four full batches, each a photo and three broken events, written together: every batch's
    letters are sent once the write is done, batch after batch, in offset order."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    writes = []
    wrapper = StoreWrapper(store)
    wrapper.write = lambda batch: (writes.append(len(batch.images)), store.write(batch))[1]
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=4)
    photos = photo_events(tmp_path)
    batches = [[RawEvent(photos[n].value, 0, 10 * n)] + [RawEvent(b"{not json", 0, 10 * n + k) for k in (1, 2, 3)]
               for n in range(4)]
    source = ScriptedSource(*batches)

    asyncio.run(service.run(source))

    assert writes == [4] and source.acked == [0, 1, 2, 3]
    assert [letter["offset"] for letter in source.letters] == [10 * n + k for n in range(4) for k in (1, 2, 3)]


def test_a_worker_stopped_while_a_write_gathers_acks_and_writes_nothing(store, tmp_path, monkeypatch):
    """Two batches wait in a write for a third, whose preparation is held: stopping the worker
    then writes nothing and acks nothing (the source delivers all three again)."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    third_preparing, release, writes = threading.Event(), threading.Event(), []
    wrapper = StoreWrapper(store)

    def stored_content(model, ids):
        if any(i.startswith("c-") for i in ids):
            third_preparing.set()
            release.wait(WAIT)
        return store.stored_content(model, ids)

    wrapper.stored_content = stored_content
    wrapper.write = lambda batch: (writes.append(len(batch.images)), store.write(batch))[1]
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=3)
    source = ScriptedSource(*[photo_events(tmp_path, f"{p}-", 3 * n)[:3] for n, p in enumerate("abc")])

    async def stop_while_gathering():
        running = asyncio.create_task(service.run(source))
        assert await asyncio.get_running_loop().run_in_executor(None, third_preparing.wait, WAIT)
        running.cancel()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), WAIT)

    try:
        asyncio.run(stop_while_gathering())
    finally:
        release.set()

    assert source.acked == [] and writes == [] and stored_ids(store) == []

def test_a_vocabulary_change_does_not_wait_for_a_write_gathering_batches(store, tmp_path, monkeypatch):
    """The first batch's write waits for the second, whose preparation here waits for v2 to be
    applied; v2's switch waits for the first batch's write. The switch tells the write to go:
    without that, the three would wait on each other until the write's time ran out."""
    monkeypatch.setattr(service_module, "GROUP_WAIT_S", 10 * WAIT)
    applied, waited = threading.Event(), []
    wrapper = StoreWrapper(store)

    def apply_vocabulary(vocab, *args, **kwargs):
        store.apply_vocabulary(vocab, *args, **kwargs)
        if vocab.version == 2:
            applied.set()

    def stored_content(model, ids):
        if any(i.startswith("b-") for i in ids):
            waited.append(applied.wait(WAIT))
        return store.stored_content(model, ids)

    wrapper.apply_vocabulary, wrapper.stored_content = apply_vocabulary, stored_content
    service = service_for(wrapper, tmp_path, space(1), write_group=4, batch_size=3)
    source = ScriptedSource(photo_events(tmp_path, "a-")[:3], Vocab(vocabulary(with_porthole()).event, wait=False),
                            photo_events(tmp_path, "b-")[:3])

    asyncio.run(asyncio.wait_for(service.run(source), 2 * WAIT))

    assert waited == [True] and source.acked == [0, 2] and service.vocab.version == 2
    assert store.count_scores("space", ["porthole_view"]) == 6  # the first batch by v2's replay, the second encoded

def test_dead_letters_leave_in_the_order_of_their_events_when_sending_is_slow(store, tmp_path):
    """Found attacking the write thread: with a producer slow to answer, a batch sent its dead
    letters while the batch before it was still sending its own. Here the first batch's first
    letter is answered only once the second batch is written."""
    second_written, waited = threading.Event(), []
    wrapper = StoreWrapper(store)

    def write(batch):
        rows = store.write(batch)
        if batch.images[0].image_id.startswith("b-"):
            second_written.set()
        return rows

    class SlowLetters(ScriptedSource):  # a test double: a producer slow to answer the first letter
        async def dead_letter(self, letter):
            if json.loads(letter)["offset"] == 1:
                waited.append(await asyncio.get_running_loop().run_in_executor(None, second_written.wait, WAIT))
            await super().dead_letter(letter)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1), write_group=1)  # each batch written on its own
    batches = [[RawEvent(photo_events(tmp_path, prefix)[0].value, 0, offset)] +
               [RawEvent(b"{not json", 0, offset + k) for k in (1, 2, 3)] for prefix, offset in (("a-", 0), ("b-", 10))]
    source = SlowLetters(*batches)

    asyncio.run(service.run(source))

    offsets = [letter["offset"] for letter in source.letters]
    assert waited == [True] and source.acked == [0, 1] and offsets == [1, 2, 3, 11, 12, 13]


def test_nothing_that_waits_for_the_batches_runs_beside_a_write_given_up_at_shutdown(store, tmp_path):
    """A worker stopping while a batch is written stops waiting for it, but the write thread
    goes on: whatever then takes the settled lock (a re-embed's write) waits for that write."""
    writing, release, returned = threading.Event(), threading.Event(), threading.Event()
    wrapper = StoreWrapper(store)

    def write(batch):
        writing.set()
        release.wait(WAIT)
        try:
            return store.write(batch)
        finally:
            returned.set()

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1))

    async def scenario():
        running = asyncio.create_task(service.run(ScriptedSource(photo_events(tmp_path)[:3])))
        await asyncio.get_running_loop().run_in_executor(None, writing.wait, WAIT)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

        async def settled():
            async with service.batches_settled():
                return returned.is_set()
        inside = asyncio.create_task(settled())
        await asyncio.sleep(0)  # one turn of the loop: without the wait, the task is inside by now
        release.set()
        return await inside

    try:
        assert asyncio.run(scenario()) is True
    finally:
        release.set()


def test_a_batch_cancelled_while_it_is_written_is_not_acked(store, tmp_path):
    """Stopping the worker cancels the loop: a batch whose write had not finished is not
    acked (Kafka delivers it again), and the write is not retried."""
    writing, release, writes = threading.Event(), threading.Event(), []
    wrapper = StoreWrapper(store)

    def write(batch):
        writes.append(len(batch.images))
        writing.set()
        release.wait(WAIT)
        return store.write(batch)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1))
    source = ScriptedSource(photo_events(tmp_path)[:3])

    async def scenario():
        loop = asyncio.get_running_loop()
        running = asyncio.create_task(service.run(source))
        await loop.run_in_executor(None, writing.wait, WAIT)
        running.cancel()
        try:
            await running
        except asyncio.CancelledError:
            return "cancelled"

    try:
        assert asyncio.run(scenario()) == "cancelled"
    finally:
        release.set()
    assert source.acked == [] and writes == [3]


def test_vocabulary_events_are_applied_once_or_dead_lettered_with_a_reason(store, tmp_path):
    service = service_for(store, tmp_path, space(1))
    v2 = with_porthole()
    older = space(1, lambda d: d.update(description="an older edit"))
    other = vocabulary_from_dict({"name": "pets", "version": 5, "attributes": [{"code": "cat", "description": "a cat"}]})
    tampered = json.loads(vocab_event(space(3)))
    tampered["document"]["description"] = "changed after hashing"
    documents = [(vocab_event(v2), b"space"), (vocab_event(v2), None), (vocab_event(older), None),
                 (vocab_event(other), b"pets"), (json.dumps(tampered).encode(), None),
                 (vocab_event(space(7)), b"pets")]  # keyed by another vocabulary: refused
    source = ScriptedSource(photo_events(tmp_path), *(Vocab(RawEvent(raw, 0, n, key))
                                                      for n, (raw, key) in enumerate(documents)))

    asyncio.run(service.run(source))

    assert store.applied_vocabulary("space").version == 2 and service.vocab.version == 2
    assert store.count_scores("space", ["porthole_view"]) == len(list(PHOTOS.glob("*.jpg")))
    assert [letter["offset"] for letter in source.letters] == [2, 4, 5]  # the repeated v2 is not an error
    assert "v1 is older than the applied v2" in source.letters[0]["reason"]
    assert "does not match the document" in source.letters[1]["reason"]
    assert source.letters[2]["reason"].startswith("not keyed by its vocabulary name: Kafka may reorder it")
    assert source.letters[2]["reason"].endswith("(key 'pets', vocabulary name 'space')")
    # another name is a vocabulary of its own, beside space, scored from the stored embeddings
    assert sorted(service.vocabs) == ["pets", "space"]
    assert store.count_scores("pets", ["cat"]) == len(list(PHOTOS.glob("*.jpg")))


def test_a_vocabulary_change_waits_for_the_store_and_then_applies(store, tmp_path):
    wrapper = StoreWrapper(store)
    failures = [StoreUnavailable("connection refused (injected)")] * 2

    def replayer(*args, **kwargs):
        if failures:
            raise failures.pop()
        return store.replayer(*args, **kwargs)

    service = service_for(wrapper, tmp_path, space(1))
    wrapper.replayer = replayer
    source = ScriptedSource(vocabulary(with_porthole()))

    asyncio.run(service.run(source))

    assert source.letters == [] and store.applied_vocabulary("space").version == 2


def test_a_change_given_up_leaves_no_image_with_scores_of_the_refused_version(store, tmp_path):
    """v2 changes the moon's prompt (two rules read it) and adds an attribute; its replay
    writes one chunk, a batch is scored with v2 meanwhile, then the replay fails (not the
    store being away): the worker goes back to v1, and every image's scores are v1's again,
    the replayed chunk's and the batch's, and v2's new attribute is gone."""
    wrapper, replaying, batch_stored = StoreWrapper(store), threading.Event(), threading.Event()
    calls = []

    def replayer(*args, **kwargs):
        real = store.replayer(*args, **kwargs)
        calls.append(real)
        if len(calls) > 1:  # what the worker does after giving up goes to the real store
            return real

        class FailingAfterAChunk:  # a test double: a replay that fails part way (a bug, a full disk)
            def run(self, vocab, diff, texts, on_chunk=None, start_at=0):
                real.replay_chunk(vocab, diff, texts, 0)
                replaying.set()  # ingest is on v2 now
                assert batch_stored.wait(WAIT)
                raise RuntimeError("replay failed (injected)")
        return FailingAfterAChunk()

    def moon(d):
        next(a for a in d["attributes"] if a["code"] == "moon")["description"] = "the full Moon in a dark sky"
        d["attributes"].append({"code": "porthole_view", "description": "a porthole"})

    service = service_for(wrapper, tmp_path, space(1))
    wrapper.replayer = replayer
    source = ScriptedSource(photo_events(tmp_path, "a-"), Vocab(vocabulary(space(2, moon)).event, wait=False),
                            Gate(lambda: asyncio.to_thread(replaying.wait, WAIT)), photo_events(tmp_path, "b-"),
                            on_ack=lambda position: position == 3 and batch_stored.set())

    asyncio.run(service.run(source))

    assert service.vocab.version == store.applied_vocabulary("space").version == 1
    assert len(source.letters) == 1 and "replay failed (injected)" in source.letters[0]["reason"]
    _, latest = store.query("SELECT attribute, image_id, argMax(vocab_version, updated_at) FROM "
                            "columnist.feature_image_attribute GROUP BY attribute, image_id")
    assert len(latest) == 2 * len(list(PHOTOS.glob("*.jpg"))) * len(space(1).codes)
    assert {version for _, _, version in latest} == {1} and "porthole_view" not in {code for code, _, _ in latest}
    scores = dict(store.query("SELECT image_id, moon FROM columnist.columns_space")[1])
    assert all(abs(scores[f"b-{photo.stem}"] - scores[f"a-{photo.stem}"]) < 1e-5 for photo in PHOTOS.glob("*.jpg"))
    assert calls[1].checkpoints(space(2, moon)).finished() == set()  # applying v2 again replays every image


def test_a_change_failing_as_it_is_recorded_loses_no_attribute_of_the_version_kept(store, tmp_path):
    """v2 removes `blurry` and adds an attribute; its replay completes, its view is made, and
    the record of it fails: the worker goes back to v1 with `blurry` still scored for every
    image, v1's view, and no score of v2's."""
    wrapper = StoreWrapper(store)

    def apply_then_fail(vocab, *args, **kwargs):  # a test double: the record's insert fails
        store.create_columns_view(vocab, f"columns_{vocab.name}")
        raise RuntimeError("recording failed (injected)")

    def v2(d):
        d["attributes"] = [a for a in d["attributes"] if a["code"] != "blurry"]
        d["attributes"].append({"code": "porthole_view", "description": "a porthole"})

    service = service_for(wrapper, tmp_path, space(1))
    wrapper.apply_vocabulary = apply_then_fail
    source = ScriptedSource(photo_events(tmp_path), vocabulary(space(2, v2)))

    asyncio.run(service.run(source))

    photos = len(list(PHOTOS.glob("*.jpg")))
    assert service.vocab.version == store.applied_vocabulary("space").version == 1 and len(source.letters) == 1
    assert store.count_scores("space", ["blurry"]) == photos and store.count_scores("space", ["porthole_view"]) == 0
    columns = {name for (name,) in store.query("SELECT name FROM system.columns WHERE database = 'columnist' "
                                               "AND table = 'columns_space'")[1]}
    assert "blurry" in columns and "porthole_view" not in columns
    _, versions = store.query("SELECT DISTINCT argMax(vocab_version, updated_at) FROM "
                              "columnist.feature_image_attribute GROUP BY attribute, image_id")
    assert versions == [(1,)]


def test_a_change_whose_undoing_fails_too_is_dead_lettered_and_ingest_goes_on(store, tmp_path, caplog):
    """The replay fails, and so does scoring its images again with v1: the document is
    dead-lettered with the replay's reason, the second failure is logged, both batches stored."""
    wrapper = StoreWrapper(store)

    class Failing:  # a test double: a store whose replays and restores both fail
        def run(self, *args, **kwargs):
            raise RuntimeError("replay failed (injected)")

        def restore(self, *args, **kwargs):
            raise ValueError("restore failed (injected)")

    service = service_for(wrapper, tmp_path, space(1))
    wrapper.replayer = lambda *args, **kwargs: Failing()
    v2 = space(2, lambda d: next(a for a in d["attributes"] if a["code"] == "moon").update(description="a pale Moon"))
    source = ScriptedSource(photo_events(tmp_path, "a-"), vocabulary(v2), photo_events(tmp_path, "b-"))

    asyncio.run(service.run(source))

    assert service.vocab.version == 1 and [letter["reason"] for letter in source.letters] == [
        "replay failed (injected)"]
    assert any("restore failed (injected)" in record.getMessage() for record in caplog.records)
    assert len(stored_ids(store)) == 2 * len(list(PHOTOS.glob("*.jpg")))


def test_new_prompts_are_encoded_while_ingest_goes_on(store, tmp_path):
    """A vocabulary whose prompts take long to encode does not hold ingest: the text tower
    here returns only once the batch after the document is stored."""
    stored_after, waited = threading.Event(), []

    class SlowTexts(MockEncoder):  # a test double: a text tower that waits for ingest
        def encode_texts(self, texts):
            if any("xylophone" in t for t in texts):
                waited.append(stored_after.wait(WAIT))
            return super().encode_texts(texts)

    service = service_for(store, tmp_path, space(1), encoder=SlowTexts())
    v2 = with_porthole(2, "a xylophone-shaped crater")
    source = ScriptedSource(photo_events(tmp_path, "a-")[:2], Vocab(RawEvent(vocab_event(v2), 0, 0), wait=False),
                            photo_events(tmp_path, "b-")[:2], on_ack=lambda position: position == 2 and stored_after.set())

    asyncio.run(service.run(source))

    assert waited == [True] and source.acked == [0, 2]
    assert service.vocab.version == 2 and store.count_scores("space", ["porthole_view"]) == 4


def test_a_prompt_explosion_is_dead_lettered_at_once_and_ingest_goes_on(store, tmp_path):
    """The 255 kB document that rendered 10,000 prompts of 76,000 characters: refused from
    its size alone, before a prompt is rendered or tokenized."""
    from tests.hostile import prompt_explosion

    service = service_for(store, tmp_path, space(1))
    encoded_at_start = service.counters.prompts_encoded
    source = ScriptedSource(photo_events(tmp_path, "a-")[:2], Vocab(RawEvent(prompt_explosion(), 0, 7)),
                            photo_events(tmp_path, "b-")[:2])

    asyncio.run(service.run(source))

    assert source.acked == [0, 2] and len(stored_ids(store)) == 4
    assert len(source.letters) == 1 and source.letters[0]["offset"] == 7
    assert "renders a prompt of 75,774 characters" in source.letters[0]["reason"]
    assert service.counters.prompts_encoded == encoded_at_start and service.vocab.version == 1


def test_two_workers_on_one_store_split_a_vocabulary_change_and_miss_no_image(store, tmp_path):
    """Two Services on ONE embedded store (what N workers on a ClickHouse server are): both
    receive the change, the chunks are split between them, every image gets the attribute."""
    first = service_for(store, tmp_path, space(1), replay_chunks=8)
    second = service_for(store, tmp_path, space(1), replay_chunks=8)
    first.replay_start, second.replay_start = 0, 4  # apart in the ring of 8 chunks
    photos = photo_events(tmp_path)
    copies = [RawEvent(event(f"copy{n:03d}", json.loads(photos[n % len(photos)].value)["uri"]), 0, n)
              for n in range(80)]
    v2 = RawEvent(vocab_event(with_porthole()), 0, 0)

    async def scenario():
        await first.run(ScriptedSource(copies[:40]))
        await second.run(ScriptedSource(copies[40:]))
        await asyncio.gather(first.run(ScriptedSource(Vocab(v2))), second.run(ScriptedSource(Vocab(v2))))

    asyncio.run(scenario())
    assert store.count_scores("space", ["porthole_view"]) == 80
    written = (first.counters.replay_chunks_written, second.counters.replay_chunks_written)
    assert min(written) > 0 and sum(written) <= 8 + 2, written  # split, not done twice over
    assert first.vocab.version == second.vocab.version == 2


def test_a_worker_behind_another_never_rolls_the_store_back(store, tmp_path):
    """Two workers on one store: the first has applied v3 already when the second, still on
    v1, receives v2... and then v3: the store never goes back, the second catches up without
    replaying again."""
    ahead = service_for(store, tmp_path, space(1))
    behind = service_for(store, tmp_path, space(1))
    v2, v3 = with_porthole(2), with_porthole(3, "a round window")
    late = ScriptedSource(Vocab(RawEvent(vocab_event(v2), 0, 0)), Vocab(RawEvent(vocab_event(v3), 0, 1)))

    async def scenario():
        await ahead.run(ScriptedSource(photo_events(tmp_path), vocabulary(v2), vocabulary(v3)))
        await behind.run(late)

    asyncio.run(scenario())
    assert store.applied_vocabulary("space").version == 3
    assert behind.vocab.version == 3 and behind.counters.replay_chunks_written == 0
    assert "older than the applied v3" in late.letters[0]["reason"] and len(late.letters) == 1
    _, versions = store.query("SELECT DISTINCT vocab_version FROM columnist.feature_image_attribute FINAL "
                              "WHERE attribute = 'porthole_view'")
    assert versions == [(3,)]


def test_a_refused_document_is_dead_lettered_once_not_at_every_restart(store, tmp_path):
    """A worker reads the vocabulary topic from its start at every restart: a document it
    refused before is logged, not dead-lettered again (8 -> 10 letters after two restarts)."""
    broken = json.loads(vocab_event(space(5)))
    broken["document"]["templates"] = ["{description} at {place}"]
    raw = RawEvent(json.dumps(broken).encode(), 0, 3)
    first = ScriptedSource(Vocab(raw))
    asyncio.run(service_for(store, tmp_path, space(1)).run(first))
    restarted = ScriptedSource(Vocab(raw))
    asyncio.run(service_for(store, tmp_path, space(1)).run(restarted))
    assert len(first.letters) == 1 and "unknown placeholder" in first.letters[0]["reason"]
    assert restarted.letters == []


def test_a_long_replay_does_not_hold_ingest(store, tmp_path):
    """A replay of 2,500 attributes took a minute while holding the vocabulary lock, and an
    image published meanwhile waited 27 s. Only the switch holds the lock now: here the replay
    finishes only once the batch after the document is stored."""
    stored_after, waited = threading.Event(), []
    wrapper = StoreWrapper(store)

    class SlowReplayer:  # a test double: the real replayer, waiting for ingest first
        def __init__(self, real):
            self.real = real

        def run(self, *args, **kwargs):
            waited.append(stored_after.wait(WAIT))
            return self.real.run(*args, **kwargs)

    service = service_for(wrapper, tmp_path, space(1))
    wrapper.replayer = lambda *args, **kwargs: SlowReplayer(store.replayer(*args, **kwargs))
    source = ScriptedSource(photo_events(tmp_path, "a-")[:2], Vocab(RawEvent(vocab_event(with_porthole()), 0, 0),
                                                                     wait=False),
                            photo_events(tmp_path, "b-")[:2], on_ack=lambda position: position == 2 and stored_after.set())

    asyncio.run(service.run(source))

    assert waited == [True] and source.acked == [0, 2]
    assert store.count_scores("space", ["porthole_view"]) == 4  # the batch after the switch, and the replay


def test_a_deleted_image_is_forgotten_and_the_last_event_of_an_id_in_a_batch_wins(store, tmp_path):
    from columnist.kafka.events import delete_event

    service = service_for(store, tmp_path, space(1))
    photos = photo_events(tmp_path)
    gone, back = json.loads(photos[0].value)["image_id"], json.loads(photos[1].value)["image_id"]
    asyncio.run(service.run(ScriptedSource(photos, [RawEvent(delete_event(gone), 0, 10),
                                                    RawEvent(delete_event(back), 0, 11), photos[1]])))
    assert gone not in stored_ids(store) and back in stored_ids(store)
    for table in ("image_embedding", "feature_image_attribute"):
        assert store.scalar(f"SELECT count() FROM columnist.{table} WHERE image_id = {{i:String}}", {"i": gone}) == 0
    assert store.scalar("SELECT count() FROM columnist.image_columns") == len(photos) - 1
    assert (service.counters.images_deleted, service.counters.events_superseded) == (1, 1)


def test_a_deletion_whose_write_is_retried_is_counted_once(store, tmp_path):
    """Found attacking the worker: a batch deleting an image, whose rows' write found the store
    away twice, counted its deletion at every attempt."""
    failures = [StoreUnavailable("connection refused (injected)")] * 2
    wrapper = StoreWrapper(store)

    def write(batch):
        if any(image.image_id.startswith("b-") for image in batch.images) and failures:
            raise failures.pop()
        return store.write(batch)

    wrapper.write = write
    service = service_for(wrapper, tmp_path, space(1))
    first = photo_events(tmp_path, "a-")[:2]
    gone = json.loads(first[0].value)["image_id"]
    asyncio.run(service.run(ScriptedSource(first, [RawEvent(delete_event(gone), 0, 2, gone.encode())]
                                           + photo_events(tmp_path, "b-", 3)[:1])))

    assert gone not in stored_ids(store) and service.counters.store_retries == 2
    assert service.counters.images_deleted == 1

def test_a_warm_up_that_never_returns_ends_the_worker_naming_it(store, tmp_path, monkeypatch, caplog):
    """Found by review: the warm-up at start ran without a deadline, and the first batch,
    queued behind it on the work thread, never started its clock: a worker whose runtime hung
    on its first run waited for ever. The process's exit is the stand-in (pytest would end)."""
    import logging

    from columnist import tower_watch
    from columnist.errors import TOWER_STUCK

    released, codes = threading.Event(), []
    monkeypatch.setattr(tower_watch, "_exit", lambda code: (codes.append(code), released.set()))

    class HangingWarmUp(MockEncoder):
        def warm_up(self):
            released.wait(10)

    with caplog.at_level(logging.CRITICAL, "columnist.tower"):
        service = service_for(store, tmp_path, vocabulary_from_dict(yaml.safe_load(SPACE_YAML.read_text())),
                              encoder=HangingWarmUp(), encode_timeout=0.05)
        service.executor.submit(lambda: None).result(10)  # the warm-up ahead of it has ended
    assert codes == [TOWER_STUCK]
    assert "has not answered 1 inputs of the model's warm-up at start" in caplog.records[-1].getMessage()
