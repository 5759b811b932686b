"""`make demo`: the whole service on this machine, start to finish, then stopped again.

Starts a fresh local Kafka (its own folder and port) and a worker on an embedded database,
publishes the sample photos, pushes vocab/space.yaml, then a version with one more
attribute, prints that new column for every image (scored from stored embeddings, no image
decoded again), and stops everything it started.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deploy.local import LocalKafka, WorkerProcess, free_port, wait_until  # noqa: E402

STATE = REPO / ".columnist"
PHOTOS = REPO / "tests" / "data" / "photos"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> None:
    for folder in ("demo-kafka", "demo-db"):
        shutil.rmtree(STATE / folder, ignore_errors=True)
    step("starting Kafka on 127.0.0.1")
    with LocalKafka(STATE / "demo-kafka") as kafka:
        env = {"COLUMNIST_KAFKA": kafka.bootstrap, "COLUMNIST_DB": f"chdb://{STATE / 'demo-db'}",
               "COLUMNIST_IMAGE_ROOTS": str(PHOTOS), "COLUMNIST_WORKER_PORT": free_port(),
               "COLUMNIST_BATCH_WITHIN": 0.5}
        step(f"starting a worker (Kafka at {kafka.bootstrap}, model tiny-clip, embedded ClickHouse)")
        worker = WorkerProcess(env, STATE / "demo-worker.log")
        try:
            run(worker)
        finally:
            step("stopping what the demo started")
            worker.stop()


def run(worker: WorkerProcess) -> None:
    def columnist(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "columnist", *args], cwd=REPO, env=worker.env, check=True)

    worker.wait_ready()
    step("publishing the sample photos")
    columnist("publish", "images", str(PHOTOS), "--collection", "samples")
    space = yaml.safe_load((REPO / "vocab" / "space.yaml").read_text())
    expected = len(list(PHOTOS.glob("*.jpg"))) * (len(space["attributes"]) + len(space["derived"]))
    wait_until(lambda: worker.counters()["score_rows"] >= expected, 120, "the scores")
    step("pushing vocab/space.yaml (already applied at start-up: nothing to do)")
    columnist("vocab", "push", "vocab/space.yaml")
    step("pushing version 2 with one more attribute: solar_eclipse")
    space["version"] = 2
    space["attributes"].append({"code": "solar_eclipse", "label": "Solar eclipse",
                                "description": "a total solar eclipse with the corona"})
    v2 = STATE / "space-v2.yaml"
    v2.write_text(yaml.safe_dump(space, sort_keys=False))
    decoded = worker.counters()["images_decoded"]
    columnist("vocab", "push", str(v2))
    wait_until(lambda: worker.status()["vocabulary"]["version"] == 2, 120, "version 2")
    print(f"images decoded while applying it: {worker.counters()['images_decoded'] - decoded}")
    step("the new column for every image, with its logit (tiny-clip has random weights: numbers, not meaning)")
    columnist("query", "SELECT image_id, round(logit, 4) AS logit, score AS solar_eclipse, source, vocab_version "
                       "FROM columnist.feature_image_attribute FINAL WHERE attribute = 'solar_eclipse' "
                       "ORDER BY image_id")
    columnist("query", "SELECT (SELECT count() FROM columnist.image_embedding FINAL) AS embeddings, "
                       "(SELECT count() FROM columnist.feature_image_attribute FINAL) AS scores, "
                       "(SELECT count() FROM columnist.vocabulary_current WHERE vocab_name = 'space') "
                       "AS attribute_columns")


if __name__ == "__main__":
    main()
