"""`make demo`: the whole service on this machine, start to finish, then stopped again.

Starts a fresh local Kafka (its own folder and port) and a worker on an embedded database,
publishes the sample photos, pushes vocab/space.yaml, then a version with one more
attribute, prints that new column for every image (scored from stored embeddings, no image
decoded again), and stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".columnist"
KAFKA_PORT = int(os.environ.get("DEMO_KAFKA_PORT", "19092"))
WORKER_PORT = int(os.environ.get("DEMO_WORKER_PORT", "16066"))
ENV = {
    **os.environ,
    "KAFKA_DATA": str(STATE / "demo-kafka"), "KAFKA_PORT": str(KAFKA_PORT), "PYTHON": sys.executable,
    "COLUMNIST_KAFKA": f"127.0.0.1:{KAFKA_PORT}", "COLUMNIST_DB": f"chdb://{STATE / 'demo-db'}",
    "COLUMNIST_IMAGE_ROOTS": str(REPO / "tests" / "data" / "photos"),
    "COLUMNIST_WORKER_PORT": str(WORKER_PORT), "COLUMNIST_BATCH_WITHIN": "0.5",
}
KAFKA_SH = [str(REPO / "deploy" / "kafka" / "kafka.sh")]


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def columnist(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, env=ENV, check=True)


def wait_for(what: str, predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main() -> None:
    from streams.reader import WorkerClient

    for folder in ("demo-kafka", "demo-db"):
        shutil.rmtree(STATE / folder, ignore_errors=True)
    step(f"starting Kafka on 127.0.0.1:{KAFKA_PORT}")
    subprocess.run(KAFKA_SH + ["up"], env=ENV, check=True)
    worker = None
    try:
        step("starting a worker (model tiny-clip, embedded ClickHouse)")
        log = open(STATE / "demo-worker.log", "wb")
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=ENV,
                                  stdout=log, stderr=subprocess.STDOUT)
        client = WorkerClient(WORKER_PORT)

        def status():
            if worker.poll() is not None:
                raise SystemExit(f"demo: the worker exited; see {STATE / 'demo-worker.log'}")
            try:
                return client.status()
            except (ConnectionError, ValueError):
                return None

        wait_for("the worker", lambda: (status() or {}).get("ready"))
        step("publishing the sample photos")
        columnist("publish", "images", "tests/data/photos")
        space = yaml.safe_load((REPO / "vocab" / "space.yaml").read_text())
        codes = len(space["attributes"]) + len(space["derived"])
        photos = len(list((REPO / "tests" / "data" / "photos").glob("*.jpg")))
        wait_for("the scores", lambda: status()["counters"]["score_rows"] >= photos * codes)
        step("pushing vocab/space.yaml (already applied at start-up: nothing to do)")
        columnist("vocab", "push", "vocab/space.yaml")
        step("pushing version 2 with one more attribute: solar_eclipse")
        space["version"] = 2
        space["attributes"].append({"code": "solar_eclipse", "label": "Solar eclipse",
                                    "description": "a total solar eclipse with the corona"})
        v2 = STATE / "space-v2.yaml"
        v2.write_text(yaml.safe_dump(space, sort_keys=False))
        decoded = status()["counters"]["images_decoded"]
        columnist("vocab", "push", str(v2))
        wait_for("version 2", lambda: status()["vocabulary"]["version"] == 2)
        print(f"images decoded while applying it: {status()['counters']['images_decoded'] - decoded}")
        step("the new column for every image, with its logit (tiny-clip has random weights: numbers, not meaning)")
        columnist("query", "SELECT image_id, round(logit, 4) AS logit, score AS solar_eclipse, source, vocab_version "
                           "FROM columnist.feature_image_attribute FINAL WHERE attribute = 'solar_eclipse' "
                           "ORDER BY image_id")
        columnist("query", "SELECT (SELECT count() FROM columnist.image_embedding FINAL) AS embeddings, "
                           "(SELECT count() FROM columnist.feature_image_attribute FINAL) AS scores, "
                           "(SELECT count() FROM system.columns WHERE database = 'columnist' "
                           "AND table = 'image_columns') - 1 AS columns")
    finally:
        step("stopping what the demo started")
        if worker and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        subprocess.run(KAFKA_SH + ["down"], env=ENV)


if __name__ == "__main__":
    main()
