"""Several workers in one consumer group on a 4-partition images topic, each with its own
embedded store (chdb allows one process per database path): every worker applies every
vocabulary change, and a worker killed mid-stream loses no event."""

from __future__ import annotations

import pytest

from deploy.local import free_port, wait_until
from tests.streams.worker.test_worker import SPACE, assert_invariant, publish_copies, push, space_version

pytestmark = pytest.mark.integration


@pytest.fixture
def partitions() -> int:
    return 4


def start_workers(start_worker, tmp_path, count: int) -> list:
    workers = [start_worker(COLUMNIST_DB=f"chdb://{tmp_path / f'db{n}'}", COLUMNIST_WORKER_PORT=free_port(),
                            COLUMNIST_BATCH_SIZE=8) for n in range(count)]
    for worker in workers:
        worker.wait_ready()
    return workers


def stored_ids(workers, table: str = "image_embedding") -> list[str]:
    return [i for worker in workers for (i,) in worker.query(f"SELECT image_id FROM columnist.{table} FINAL")]


def test_every_worker_applies_every_vocabulary_change(stream_env, start_worker, tmp_path):
    env, settings = stream_env
    workers = start_workers(start_worker, tmp_path, 2)
    early = publish_copies(settings, 40, prefix="early")
    wait_until(lambda: len(stored_ids(workers)) == len(early), 180, "the first images on the two workers")
    v2 = space_version(2, lambda d: d["attributes"].append({"code": "solar_eclipse", "description": "an eclipse"}))
    push(settings, v2)
    wait_until(lambda: all(w.status()["vocabulary"]["version"] == 2 for w in workers), 120, "v2 on every worker")
    late = publish_copies(settings, 40, prefix="late")
    wait_until(lambda: len(stored_ids(workers)) == len(early) + len(late), 180, "the later images")
    # the status says v2 at the switch; its replay of the stored images may still be running
    # (under load it outlasted the later images), and a batch writes its images rows last
    wait_until(lambda: all(w.counters()["replays"] == 1 for w in workers)
               and sum(w.scalar("SELECT count() FROM columnist.images FINAL") for w in workers) == len(early) + len(late),
               180, "v2's replay and every batch's last write on both workers")
    assert sorted(stored_ids(workers)) == sorted(early + late)  # each image once, on one worker
    for worker in workers:
        assert_invariant(worker, v2)  # every image in every store has the new attribute
    assert sum(worker.counters()["images_encoded"] + worker.counters()["images_reused"] for worker in workers) \
        == len(early) + len(late)


def test_a_worker_killed_mid_stream_loses_no_event(stream_env, start_worker, tmp_path):
    env, settings = stream_env
    first, second = start_workers(start_worker, tmp_path, 2)
    ids = publish_copies(settings, 160)
    wait_until(lambda: first.scalar("SELECT count() FROM columnist.image_embedding FINAL") >= 8, 120,
               "the first worker to store a batch")
    first.process.kill()  # SIGKILL, mid-stream
    first.wait_exit()
    wait_until(lambda: second.counters()["batches"] > 0 and len(stored_ids([second])) > 0, 120, "the survivor")
    again = start_worker(COLUMNIST_DB=first.env["COLUMNIST_DB"], COLUMNIST_WORKER_PORT=free_port(),
                         COLUMNIST_BATCH_SIZE=8)  # its store, readable again (one process per chdb path)
    again.wait_ready()
    wait_until(lambda: set(stored_ids([again, second], "images")) == set(ids), 240,
               "every event in the union of the stores (images rows: a batch's last write)")
    assert set(stored_ids([again, second])) == set(ids)
    for worker in (again, second):
        assert_invariant(worker, SPACE)  # nothing half-written
