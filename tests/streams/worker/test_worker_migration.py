"""A model migration through real workers on a real Kafka broker: two `columnist worker`
processes (each with its own embedded store: one process per chdb path), the steps sent with
`columnist model ... --publish`, images arriving throughout, one worker killed with SIGKILL
in the middle of its re-embed job. The wide view of each store is watched the whole time."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO
from tests.streams.conftest import free_port, wait_until
from tests.streams.worker.test_worker import publish_copies

pytestmark = pytest.mark.integration


class ViewWatch(threading.Thread):
    """Looks at each running worker's wide view, again and again, through its control page:
    every image stored before a look must be in the view with every column (of one model: the
    view reads the serving one's). A worker that is down or busy is looked at the next time."""

    def __init__(self, workers):
        super().__init__(daemon=True)
        self.workers, self.looks, self.bad = workers, 0, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for worker in list(self.workers):
                try:
                    stored = {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")}
                    codes = [c for (c,) in worker.query("SELECT code FROM columnist.vocabulary_current "
                                                        "WHERE vocab_name = 'space'")]
                    nulls = " OR ".join(f"`{c}` IS NULL" for c in codes)
                    shown = dict(worker.query(f"SELECT image_id, {nulls} FROM columnist.columns_space"))
                except Exception:  # noqa: BLE001 - a worker killed or restarting: looked at again later
                    continue
                self.looks += 1
                gaps = (len(stored - shown.keys()), sum(shown[i] for i in stored & shown.keys()))
                if gaps != (0, 0):
                    self.bad.append(gaps)

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def columnist(env, *args):
    done = subprocess.run([sys.executable, "-m", "columnist", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def models(worker) -> dict:
    return (worker.status() or {}).get("models") or {}


def test_two_workers_move_to_another_model_mid_stream_through_a_kill9(stream_env, start_worker, tmp_path):
    env, settings = stream_env
    one = {"COLUMNIST_DB": f"chdb://{tmp_path / 'db1'}", "COLUMNIST_WORKER_PORT": str(free_port())}
    two = {"COLUMNIST_DB": f"chdb://{tmp_path / 'db2'}", "COLUMNIST_WORKER_PORT": str(free_port())}
    first, second = start_worker(**one), start_worker(**two, COLUMNIST_FAULTS="kill:after_reembed_chunk:3")
    first.wait_ready(), second.wait_ready()
    ids = publish_copies(settings, 40, "a")

    def stored() -> int:
        return sum(w.scalar("SELECT count() FROM columnist.images FINAL") for w in (first, second))
    wait_until(lambda: stored() == len(ids), 180, "the first images")
    watch = ViewWatch([first, second])
    watch.start()
    try:
        columnist(first.env, "model", "migrate", "--to", "mock", "--publish")
        ids += publish_copies(settings, 20, "b")  # arriving while the stores move
        assert second.wait_exit(180) == -9  # killed after its third re-embed chunk
        watch.workers.remove(second)
        second = start_worker(**two)  # the same store: the job resumes from its checkpoints
        second.wait_ready()
        watch.workers.append(second)
        for worker in (first, second):
            wait_until(lambda: models(worker).get("reembed", {}).get("remaining") == 0, 180, "the re-embed")
        wait_until(lambda: stored() == len(ids), 180, "the images published meanwhile")
        columnist(first.env, "model", "cutover", "--to", "mock", "--publish")
        for worker in (first, second):
            wait_until(lambda: models(worker).get("serving") == "mock" and not models(worker).get("target"), 120,
                       "the cutover")
        ids += publish_copies(settings, 10, "c")  # after the cutover: the new model only
        wait_until(lambda: stored() == len(ids), 180, "the images published after the cutover")
    finally:
        watch.stop()
    assert watch.looks > 10 and not watch.bad, (watch.looks, watch.bad[:5])
    for worker in (first, second):
        images = worker.scalar("SELECT count() FROM columnist.images FINAL")
        assert worker.scalar("SELECT count() FROM columnist.image_embedding FINAL WHERE model = 'mock'") == images
        assert worker.scalar("SELECT count() FROM columnist.image_embedding FINAL WHERE model = 'tiny-clip' "
                             "AND image_id LIKE 'c%'") == 0  # not encoded with the old model after the cutover

    columnist(first.env, "model", "retire", "tiny-clip", "--publish")
    for worker in (first, second):
        wait_until(lambda: worker.scalar("SELECT count() FROM columnist.image_embedding WHERE model = 'tiny-clip'")
                   == 0, 120, "the old model's rows to go")
        rows = worker.query("SELECT count(), countIf(moon IS NULL) FROM columnist.image_columns")[0]
        assert rows == [worker.scalar("SELECT count() FROM columnist.images FINAL"), 0]
