"""`make demo`: the whole service on this machine, start to finish, then stopped again.

Fits a calibration to tiny-clip's view of the sample photos (as `make demo-tag` does: tiny-clip
has random weights, and the fit only spreads its scores over the tiers), starts a fresh local
Kafka (its own folder and port) and a worker on an embedded database, publishes the sample
photos, pushes the vocabulary, then a version with one more attribute, prints that new column
for every image (scored from stored embeddings, no image decoded again) and the tiers, and
stops everything it started.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deploy.demo_tag import NOTE, fitted_copy  # noqa: E402
from deploy.local import LocalKafka, WorkerProcess, free_port, wait_until  # noqa: E402

STATE = REPO / ".columnist"
PHOTOS = REPO / "tests" / "data" / "photos"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> None:
    for folder in ("demo-kafka", "demo-db", "demo-fit-db"):
        shutil.rmtree(STATE / folder, ignore_errors=True)
    STATE.mkdir(exist_ok=True)
    step("fitting a calibration to tiny-clip's scores of the sample photos (unlabelled)")
    fit_db = f"chdb://{STATE / 'demo-fit-db'}"
    subprocess.run([sys.executable, "-m", "columnist", "tag", str(PHOTOS), "--vocab", "vocab/space.yaml", "--db",
                    fit_db], cwd=REPO, check=True, capture_output=True)
    vocabulary = fitted_copy(REPO / "vocab" / "space.yaml", fit_db)
    step("starting Kafka on 127.0.0.1")
    with LocalKafka(STATE / "demo-kafka") as kafka:
        env = {"COLUMNIST_KAFKA": kafka.bootstrap, "COLUMNIST_DB": f"chdb://{STATE / 'demo-db'}",
               "COLUMNIST_IMAGE_ROOTS": str(PHOTOS), "COLUMNIST_WORKER_PORT": free_port(),
               "COLUMNIST_BATCH_WITHIN": 0.5, "COLUMNIST_VOCAB": str(vocabulary),
               "COLUMNIST_RUN_DIR": str(STATE / "demo-run")}
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
    fitted = Path(worker.env["COLUMNIST_VOCAB"])
    space = yaml.safe_load(fitted.read_text())
    expected = len(list(PHOTOS.glob("*.jpg"))) * (len(space["attributes"]) + len(space["derived"]))
    wait_until(lambda: worker.counters()["score_rows"] >= expected, 120, "the scores")
    step(f"pushing {fitted.name} (space v2, applied at start-up: nothing to push)")
    columnist("vocab", "push", str(fitted))
    step("pushing version 3 with one more attribute: solar_eclipse")
    space["version"] = 3
    space["attributes"].append({"code": "solar_eclipse", "label": "Solar eclipse",
                                "description": "a total solar eclipse with the corona"})
    v3 = STATE / "space-v3.yaml"
    v3.write_text(yaml.safe_dump(space, sort_keys=False))
    decoded = worker.counters()["images_decoded"]
    columnist("vocab", "push", str(v3))
    wait_until(lambda: worker.status()["vocabulary"]["version"] == 3, 120, "version 3")
    print(f"images decoded while applying it: {worker.counters()['images_decoded'] - decoded}")
    step("the new column for every image, with its logit (tiny-clip has random weights: numbers, not meaning)")
    columnist("query", "SELECT image_id, round(logit, 4) AS logit, score AS solar_eclipse, source, vocab_version "
                       "FROM columnist.feature_image_attribute FINAL WHERE attribute = 'solar_eclipse' "
                       "ORDER BY image_id")
    columnist("query", "SELECT (SELECT count() FROM columnist.image_embedding FINAL) AS embeddings, "
                       "(SELECT count() FROM columnist.feature_image_attribute FINAL) AS scores, "
                       "(SELECT count() FROM columnist.vocabulary_current WHERE vocab_name = 'space') "
                       "AS attribute_columns")
    step("the tiers the scores fall in (the vocabulary's thresholds)")
    columnist("query", "SELECT tier, count() AS scores FROM columnist.image_attribute_tier GROUP BY tier ORDER BY tier")
    print(NOTE)


if __name__ == "__main__":
    main()
