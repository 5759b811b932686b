"""`columnist watch` beside a real worker on a real Kafka broker: a photo copied into the
folder is stored within seconds and its XMP sidecar appears (COLUMNIST_SIDECARS), one deleted
is forgotten, and a restarted watch publishes only what changed while it was stopped."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import PHOTOS, REPO
from tests.streams.conftest import consume_all, wait_until

pytestmark = pytest.mark.integration


def start_watch(env, folder, log):
    return subprocess.Popen([sys.executable, "-m", "columnist", "watch", str(folder), "--settle", "0.5"], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def test_a_watched_folder_reaches_the_store_and_a_restart_publishes_only_the_news(stream_env, start_worker, tmp_path):
    env, settings = stream_env
    folder = settings.roots[0]
    worker = start_worker(COLUMNIST_MODEL="mock", COLUMNIST_SIDECARS="accepted")  # mock: scores in every tier
    worker.wait_ready()
    watch_env = {**worker.env, "HOME": str(tmp_path / "home")}  # its state file, this test's own
    log = open(tmp_path / "watch.log", "wb")

    def stored() -> set[str]:
        return {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")}

    (folder / "notes.txt").write_text("not a photo")  # not taken: counted when the watch catches up and stops
    watching = start_watch(watch_env, folder, log)
    wait_until(lambda: b"caught up" in (tmp_path / "watch.log").read_bytes(), 60, "the watch to start")
    shutil.copy(PHOTOS / "moon.jpg", folder / "moon.jpg")
    shutil.copy(PHOTOS / "rocket.jpg", folder / "rocket.jpg")
    moon, rocket = (folder / "moon.jpg").resolve().as_uri(), (folder / "rocket.jpg").resolve().as_uri()
    wait_until(lambda: stored() == {moon, rocket}, 60, "the copied photos to be stored")
    wait_until(lambda: (folder / "rocket.jpg.xmp").exists(), 60, "the sidecar of a stored photo")
    assert "columnist|space|" in (folder / "rocket.jpg.xmp").read_text()
    (folder / "moon.jpg").unlink()
    wait_until(lambda: stored() == {rocket}, 60, "the deleted photo to be forgotten")
    watching.send_signal(signal.SIGTERM)
    assert watching.wait(30) == 0
    log.flush()
    assert b"stopped: 2 images and 1 deletions published; skipped: 1 .txt" in (tmp_path / "watch.log").read_bytes()

    shutil.copy(PHOTOS / "coffee.jpg", folder / "coffee.jpg")  # while nobody watches
    watching = start_watch(watch_env, folder, log)
    try:
        coffee = (folder / "coffee.jpg").resolve().as_uri()
        wait_until(lambda: stored() == {rocket, coffee}, 60, "the photo added meanwhile")
    finally:
        watching.send_signal(signal.SIGTERM)
        watching.wait(30)
        log.close()
    events = consume_all(settings, settings.topic_images, 5, timeout=5)  # a fifth would be a republished file
    assert sorted(e["image_id"] for e in events if not e.get("deleted")) == sorted([moon, rocket, coffee])
    assert [e["image_id"] for e in events if e.get("deleted")] == [moon]
    assert len(events) == 4  # the restart published the one new photo, not the folder again
