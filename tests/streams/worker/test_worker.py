"""The streaming service end to end: a real Kafka broker, the real ClickHouse engine, and
`columnist worker` processes (killed with SIGKILL where the test says so)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from columnist.kafka.events import image_event, vocab_event
from tests.conftest import PHOTOS, REPO, SPACE_YAML
from tests.hostile import MAX_BYTES, image_cases, vocabulary_cases
from tests.streams.conftest import consume_all, free_port, produce, wait_until
from columnist.vocab.schema import Vocabulary, load_vocabulary, vocabulary_from_dict

pytestmark = pytest.mark.integration
PHOTO_FILES = sorted(PHOTOS.glob("*.jpg"))
SPACE = load_vocabulary(SPACE_YAML)


def images_dir(settings) -> Path:
    root = settings.roots[0]
    if not any(root.iterdir()):
        for photo in PHOTO_FILES:
            shutil.copy(photo, root / photo.name)
    return root


def publish_copies(settings, count: int, prefix: str = "img") -> list[str]:
    """``count`` events, each naming one of the sample photos under its own image_id."""
    root = images_dir(settings)
    ids = [f"{prefix}{i:04d}" for i in range(count)]
    messages = [(i.encode(), image_event(i, (root / PHOTO_FILES[n % len(PHOTO_FILES)].name).as_uri()))
                for n, i in enumerate(ids)]
    produce(settings, settings.topic_images, messages)
    return ids


def space_version(version: int, edit=None) -> Vocabulary:
    document = yaml.safe_load(SPACE_YAML.read_text())
    document["version"] = version
    if edit:
        edit(document)
    return vocabulary_from_dict(document, f"space v{version}")


def push(settings, vocab) -> None:
    produce(settings, settings.topic_vocab, [(vocab.name.encode(), vocab_event(vocab))])


def wait_for_scores(worker, expected_rows: int, timeout: float = 120) -> None:
    """Until that many score rows are stored, and each scored image's row too (a batch writes
    the images rows last: waiting for the scores alone raced them)."""
    def stored() -> bool:
        return worker.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL") == expected_rows and \
            worker.scalar("SELECT count() FROM (SELECT DISTINCT image_id FROM columnist.feature_image_attribute "
                          "WHERE position(image_id, '#t=') = 0) WHERE image_id NOT IN "
                          "(SELECT image_id FROM columnist.images FINAL)") == 0
    wait_until(stored, timeout, f"{expected_rows} score rows and their images")


def wait_for_version(worker, version: int, timeout: float = 120) -> None:
    wait_until(lambda: worker.scalar("SELECT max(vocab_version) FROM columnist.vocabulary_applied FINAL") == version,
               timeout, f"vocabulary version {version} to be applied")


def assert_invariant(worker, vocab) -> None:
    """Every stored embedding has exactly one current score per attribute of the vocabulary."""
    codes = "', '".join(vocab.codes)
    embeddings = worker.scalar("SELECT count() FROM columnist.image_embedding FINAL")
    rows = worker.query(
        f"SELECT count(), uniqExact(image_id, attribute) FROM columnist.feature_image_attribute FINAL "
        f"WHERE vocab_name = '{vocab.name}' AND attribute IN ('{codes}')")[0]
    assert rows == [embeddings * len(vocab.codes)] * 2, (rows, embeddings)
    missing = worker.scalar(
        f"SELECT count() FROM columnist.image_embedding FINAL WHERE image_id NOT IN "
        f"(SELECT image_id FROM columnist.feature_image_attribute FINAL WHERE vocab_name = '{vocab.name}' "
        f"AND attribute IN ('{codes}') GROUP BY image_id HAVING uniqExact(attribute) = {len(vocab.codes)})")
    assert missing == 0


def updated_at(worker) -> dict[tuple[str, str], str]:
    return {(a, i): t for a, i, t in worker.query(
        "SELECT attribute, image_id, toString(updated_at) FROM columnist.feature_image_attribute FINAL")}


def test_publish_ingest_and_vocabulary_changes(stream_env, start_worker):
    env, settings = stream_env
    worker = start_worker()
    worker.wait_ready()
    root = images_dir(settings)
    published = subprocess.run([".venv/bin/columnist" if (REPO / ".venv/bin/columnist").exists() else "columnist",
                                "publish", "images", str(root)], cwd=REPO, env=worker.env,
                               capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stderr
    n = len(PHOTO_FILES)
    wait_for_scores(worker, n * len(SPACE.codes))
    assert worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") == n
    columns = [row[:1] for row in worker.query("DESCRIBE TABLE columnist.image_columns")]
    assert [c for (c,) in columns] == ["image_id", "collection", "uri", "ingested_at", *SPACE.codes]
    assert_invariant(worker, SPACE)
    # the CLI reads the embedded database through the worker, in any format (piped: TSV)
    piped = subprocess.run([sys.executable, "-m", "columnist", "query", "SELECT count() AS images FROM columnist.images "
                            "FINAL"], cwd=REPO, env=worker.env, capture_output=True, text=True, timeout=120)
    assert piped.stdout == f"images\n{n}\n", piped.stderr

    # one new attribute: rows for it only, from stored embeddings, no image decoded or encoded
    before, counters = updated_at(worker), worker.counters()
    v2 = space_version(2, lambda d: d["attributes"].append(
        {"code": "solar_eclipse", "label": "Solar eclipse", "description": "a total solar eclipse"}))
    push(settings, v2)
    wait_for_version(worker, 2)
    after = updated_at(worker)
    assert {k for k in after if k not in before} == {("solar_eclipse", (root / f.name).resolve().as_uri())
                                                     for f in PHOTO_FILES}
    assert all(after[k] == before[k] for k in before)
    now = worker.counters()
    assert (now["images_decoded"], now["images_encoded"]) == (counters["images_decoded"], counters["images_encoded"])
    assert now["prompts_encoded"] - counters["prompts_encoded"] == len(v2.templates)
    assert_invariant(worker, v2)

    # a changed description re-scores that attribute and its derived dependents only
    before = after
    v3 = space_version(3, lambda d: (d["attributes"].append(v2.entry("solar_eclipse").model_dump(exclude_defaults=True)),
                                     next(a for a in d["attributes"] if a["code"] == "moon").update(description="the full Moon")))
    push(settings, v3)
    wait_for_version(worker, 3)
    after = updated_at(worker)
    changed = {attribute for (attribute, _), t in after.items() if before[(attribute, _)] != t}
    assert changed == {"moon", "earth_and_moon", "view_from_window"}

    # a removed attribute disappears from image_columns
    v4 = space_version(4)
    push(settings, v4)
    wait_for_version(worker, 4)
    columns = [row[:1] for row in worker.query("DESCRIBE TABLE columnist.image_columns")]
    assert "solar_eclipse" not in {c for (c,) in columns}
    assert worker.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL WHERE attribute = 'solar_eclipse'") == 0
    assert_invariant(worker, v4)


def test_bad_events_are_dead_lettered_and_the_batch_goes_on(stream_env, start_worker, tmp_path):
    env, settings = stream_env
    root = images_dir(settings)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    outside = tmp_path / "outside.jpg"
    shutil.copy(PHOTO_FILES[0], outside)
    good = [(f"good{i}", (root / p.name).as_uri()) for i, p in enumerate(PHOTO_FILES[:3])]
    tiny_png = base64.b64encode((REPO / "tests/data/photos/moon.jpg").read_bytes()).decode()
    good.append(("inline", f"data:image/jpeg;base64,{tiny_png}"))
    bad = {
        "not json": b"{this is not json",
        "missing uri": b'{"schema": 1, "image_id": "x1"}',
        "unknown scheme": image_event("x2", "ftp://example.com/a.jpg"),
        "outside roots": image_event("x3", outside.as_uri()),
        "dot-dot escape": image_event("x4", (root / ".." / "outside.jpg").as_uri()),
        "missing file": image_event("x5", (root / "nope.jpg").as_uri()),
        "undecodable": image_event("x6", (root / "broken.jpg").as_uri()),
        "http off": image_event("x7", "http://127.0.0.1:9/a.jpg"),
    }
    messages = [(i.encode(), image_event(i, uri)) for i, uri in good[:2]]
    messages += [(None, raw) for raw in bad.values()]
    messages += [(i.encode(), image_event(i, uri)) for i, uri in good[2:]]
    produce(settings, settings.topic_images, messages)
    worker = start_worker(COLUMNIST_BATCH_SIZE=64, COLUMNIST_BATCH_WITHIN=1.0)
    worker.wait_ready()
    wait_for_scores(worker, len(good) * len(SPACE.codes))
    letters = consume_all(settings, settings.topic_deadletter, len(bad))
    assert len(letters) == len(bad)
    reasons = {letter["event"]: letter["reason"] for letter in letters}
    for name, raw in bad.items():
        assert raw.decode() in reasons, name
    by_name = {name: reasons[raw.decode()] for name, raw in bad.items()}
    assert "not valid JSON" in by_name["not json"]
    assert "uri: missing" in by_name["missing uri"]
    assert "unsupported URI scheme 'ftp'" in by_name["unknown scheme"]
    assert "outside the image roots" in by_name["outside roots"]
    assert "outside the image roots" in by_name["dot-dot escape"]
    assert "file not found" in by_name["missing file"]
    assert "image 'x6'" in by_name["undecodable"] and "cannot decode" in by_name["undecodable"]
    assert "not on the http allow-list" in by_name["http off"]
    assert all(letter["topic"] == settings.topic_images and letter["worker"] for letter in letters)
    stored = {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")}
    assert stored == {i for i, _ in good}

    from datetime import datetime, timedelta, timezone

    from columnist.kafka.deadletters import read_dead_letters  # what `columnist deadletters` reads
    found = read_dead_letters(settings, contains="outside the image roots")
    assert found.matching == 2 and len(found.letters) == 2
    assert read_dead_letters(settings).matching == len(bad)
    assert read_dead_letters(settings, since=datetime.now(timezone.utc) + timedelta(hours=1)).matching == 0

    # an invalid vocabulary is dead-lettered; the worker keeps the last good one
    broken = b'{"schema": 1, "name": "space", "version": 9, "content_hash": "x", "document": {"name": "space"}}'
    produce(settings, settings.topic_vocab, [(b"space", broken)])
    letters = consume_all(settings, settings.topic_deadletter, len(bad) + 1)
    vocab_letter = next(letter for letter in letters if letter["topic"] == settings.topic_vocab)
    assert "attributes: required field is missing" in vocab_letter["reason"]
    assert worker.status()["vocabulary"]["version"] == 1


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
def test_any_producer_works_kcat(stream_env, start_worker):
    env, settings = stream_env
    root = images_dir(settings)
    worker = start_worker()
    worker.wait_ready()
    event = image_event("from-kcat", (root / PHOTO_FILES[0].name).as_uri())
    sent = subprocess.run(["kcat", "-P", "-b", settings.kafka, "-t", settings.topic_images, "-k", "from-kcat"],
                          input=event, capture_output=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    wait_for_scores(worker, len(SPACE.codes))
    assert worker.query("SELECT image_id FROM columnist.images FINAL") == [["from-kcat"]]


def test_kill9_in_the_middle_of_an_ingest_batch(stream_env, start_worker):
    env, settings = stream_env
    ids = publish_copies(settings, 40)
    # SIGKILL after the 2nd batch's embeddings are written and before its scores are
    crashing = start_worker(COLUMNIST_BATCH_SIZE=8, COLUMNIST_FAULTS="kill:after_embeddings:2")
    assert crashing.wait_exit(120) == -9
    assert "applied" in crashing.tail(200)
    worker = start_worker(COLUMNIST_BATCH_SIZE=8)
    worker.wait_ready()
    wait_for_scores(worker, len(ids) * len(SPACE.codes))
    assert worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") == len(ids)
    assert_invariant(worker, SPACE)


def test_a_stuck_image_tower_ends_the_worker_and_its_batch_comes_again(stream_env, start_worker):
    """A runtime that never returns (deadlocked in native code: no Python can interrupt it)
    left the worker alive, consuming nothing, for ever; now it exits with code 6 and a line
    naming the batch, and the next worker stores every event."""
    env, settings = stream_env
    ids = publish_copies(settings, 24)
    stuck = start_worker(COLUMNIST_BATCH_SIZE=8, COLUMNIST_FAULTS="hang:encode:1", COLUMNIST_ENCODE_TIMEOUT=1)
    assert stuck.wait_exit(120) == 6
    assert "has not answered 7 inputs of batch of 8 events" in stuck.tail(200)  # 7 photos: 7 contents
    worker = start_worker(COLUMNIST_BATCH_SIZE=8)
    worker.wait_ready()
    wait_for_scores(worker, len(ids) * len(SPACE.codes))
    assert {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")} == set(ids)
    assert_invariant(worker, SPACE)


def test_a_file_that_hangs_its_decoder_ends_the_worker_once_and_then_is_a_dead_letter(stream_env, start_worker, tmp_path):
    """A crafted file can loop a decoder for ever (LibRaw, libheif and Pillow's plugins have
    had such bugs), and the worker waited on it for ever. Now it exits with code 7 naming the
    file, whose content it lists; the next worker dead-letters the events of that content
    without decoding them, and stores the rest. (The fault stands in for such a file: the
    decoders installed here have no known one.)"""
    env, settings = stream_env
    ids = publish_copies(settings, 24)
    run = {"COLUMNIST_RUN_DIR": str(tmp_path / "run"), "COLUMNIST_BATCH_SIZE": 8}
    stuck = start_worker(**run, COLUMNIST_FAULTS="hang:decode:1", COLUMNIST_DECODE_TIMEOUT=1)
    assert stuck.wait_exit(120) == 7
    assert "did not end within its deadline (COLUMNIST_DECODE_TIMEOUT): its decoder is stuck" in stuck.tail(200)
    sha, _ = (tmp_path / "run" / "decode-stuck.txt").read_text().split(maxsplit=1)
    contents = [hashlib.sha256(PHOTO_FILES[n % len(PHOTO_FILES)].read_bytes()).hexdigest() for n in range(len(ids))]
    listed = {i for i, content in zip(ids, contents) if content == sha}
    assert listed
    worker = start_worker(**run)
    worker.wait_ready()
    wait_for_scores(worker, (len(ids) - len(listed)) * len(SPACE.codes))
    letters = consume_all(settings, settings.topic_deadletter, len(listed))
    assert len(letters) == len(listed)
    assert all("overran COLUMNIST_DECODE_TIMEOUT before" in letter["reason"] for letter in letters)
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.images FINAL") == len(ids) - len(listed), 60,
               "the images rows")
    assert {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")} == set(ids) - listed
    assert worker.counters()["dead_letters"] == len(listed)


def test_kill9_in_the_middle_of_a_replay(stream_env, start_worker):
    env, settings = stream_env
    ids = publish_copies(settings, 40)
    worker = start_worker()
    worker.wait_ready()
    wait_for_scores(worker, len(ids) * len(SPACE.codes))
    worker.stop()
    v2 = space_version(2, lambda d: d["attributes"].append({"code": "porthole_view", "description": "a view through a porthole"}))
    push(settings, v2)
    crashing = start_worker(COLUMNIST_FAULTS="kill:after_replay_chunk:3")
    assert crashing.wait_exit(120) == -9
    worker = start_worker()
    worker.wait_ready()
    wait_for_version(worker, 2)
    assert_invariant(worker, v2)
    resumed = worker.query("SELECT count() FROM columnist.replay_checkpoint FINAL WHERE job = "
                           f"'{v2.content_hash()}'")[0][0]
    assert resumed == 8
    assert "3 of 8 chunks were already done" in worker.tail(400)


def test_failing_store_stalls_the_stream_and_loses_nothing(stream_env, start_worker):
    env, settings = stream_env
    ids = publish_copies(settings, 20)
    worker = start_worker(COLUMNIST_BATCH_SIZE=8, COLUMNIST_FAULTS="fail:store_write:4")
    worker.wait_ready()
    wait_for_scores(worker, len(ids) * len(SPACE.codes))
    counters = worker.counters()
    assert counters["store_retries"] == 4
    assert counters["dead_letters"] == 0
    assert_invariant(worker, SPACE)
    assert "failed (attempt 4): StoreUnavailable: cannot reach ClickHouse" in worker.tail(400)


def test_a_worker_with_an_invalid_vocabulary_file_stops_and_says_why(stream_env, start_worker, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: space\nversion: 1\nattributes:\n  - {code: Bad-Code, description: x}\n")
    worker = start_worker(COLUMNIST_VOCAB=str(broken))
    assert worker.wait_exit(60) == 3  # a configuration error, found before joining the consumer group
    assert "Bad-Code" in worker.tail(200) and "Traceback" not in worker.tail(200)


def test_a_hostile_batch_is_dead_lettered_event_by_event_and_its_good_events_stored(stream_env, start_worker, tmp_path):
    """The hostile corpus through a real broker, mixed with good events in the same batches:
    no crash, no hang, every good event stored, every bad one dead-lettered with its reason."""
    env, settings = stream_env
    root = images_dir(settings)
    cases = [c for c in image_cases(root, tmp_path / "outside") if len(c.event or b"") < 1_000_000]
    good = [(f"good{i}", (root / p.name).as_uri()) for i, p in enumerate(PHOTO_FILES)]
    messages = [(case.kafka_key(b"hostile"), case.event) for case in cases]  # a tombstone needs a key
    for i, (image_id, uri) in enumerate(good):
        messages.insert(i * 5, (image_id.encode(), image_event(image_id, uri)))
    produce(settings, settings.topic_images, messages, partition=0)  # one partition: the letters in order
    metrics_port = free_port()
    worker = start_worker(COLUMNIST_BATCH_SIZE=64, COLUMNIST_BATCH_WITHIN=1.0, COLUMNIST_MAX_IMAGE_BYTES=MAX_BYTES,
                          COLUMNIST_HTTP_TIMEOUT=2, COLUMNIST_METRICS_PORT=metrics_port)
    worker.wait_ready()
    wait_for_scores(worker, len(good) * len(SPACE.codes))
    letters = consume_all(settings, settings.topic_deadletter, len(cases))
    assert len(letters) == len(cases)
    assert {letter["partition"] for letter in letters} == {0}
    for case, letter in zip(cases, sorted(letters, key=lambda letter: letter["offset"])):
        assert case.reason in letter["reason"], (case.name, letter["reason"])
    assert {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")} == {i for i, _ in good}
    counters = worker.counters()
    assert counters["batch_retries"] == 0 and counters["dead_letters"] == len(cases)
    assert worker.process.poll() is None
    import urllib.request

    def metrics() -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            return response.read().decode().splitlines()

    assert f"columnist_dead_letters_total {float(len(cases))}" in metrics()  # Prometheus' numbers are floats
    wait_until(lambda: "columnist_consumer_lag 0.0" in metrics(), 60, "every offset committed, as /metrics says")


def test_a_batch_that_fails_as_a_whole_is_retried_and_never_committed(stream_env, start_worker):
    """An exception outside any one event (injected where a bug would be) stalls the batch,
    retried with backoff; stopping the worker then commits nothing: the next one stores it."""
    env, settings = stream_env
    ids = publish_copies(settings, 16)
    worker = start_worker(COLUMNIST_BATCH_SIZE=8, COLUMNIST_FAULTS="fail:ingest_batch:1000")
    worker.wait_ready()
    wait_until(lambda: worker.counters()["batch_retries"] >= 2, 120, "the batch to be retried")
    assert worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") == 0
    worker.stop()
    worker = start_worker(COLUMNIST_BATCH_SIZE=8, COLUMNIST_FAULTS="fail:ingest_batch:1")
    worker.wait_ready()
    wait_for_scores(worker, len(ids) * len(SPACE.codes))
    assert worker.counters()["batch_retries"] == 1
    assert_invariant(worker, SPACE)


def test_a_vocabulary_push_during_ingest_never_mixes_versions(stream_env, start_worker):
    env, settings = stream_env
    ids = publish_copies(settings, 96)
    worker = start_worker(COLUMNIST_BATCH_SIZE=8)
    worker.wait_ready()
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") >= 8, 120, "a first batch")

    def edit(document):
        document["attributes"] = [a for a in document["attributes"] if a["code"] != "blurry"]
        document["attributes"].append({"code": "new_one", "description": "a brand new attribute"})
        next(a for a in document["attributes"] if a["code"] == "earth").update(description="our home planet")

    v2 = space_version(2, edit)
    push(settings, v2)
    wait_for_version(worker, 2)
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") == len(ids), 180,
               "every image")
    wait_for_scores(worker, len(ids) * len(v2.codes))
    assert_invariant(worker, v2)
    assert worker.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL WHERE attribute = 'blurry'") == 0
    assert worker.query("SELECT DISTINCT vocab_version FROM columnist.feature_image_attribute FINAL "
                        "WHERE attribute IN ('earth', 'new_one')") == [[2]]


def test_hostile_vocabulary_events_are_dead_lettered_and_the_worker_keeps_its_vocabulary(stream_env, start_worker):
    env, settings = stream_env
    worker = start_worker()
    worker.wait_ready()
    cases = vocabulary_cases(yaml.safe_load(SPACE_YAML.read_text()))
    produce(settings, settings.topic_vocab, [(case.key or b"space", case.event) for case in cases])
    letters = consume_all(settings, settings.topic_deadletter, len(cases))
    assert [letter["topic"] for letter in letters] == [settings.topic_vocab] * len(cases)
    for case, letter in zip(cases, sorted(letters, key=lambda letter: letter["offset"])):
        assert case.reason in letter["reason"], (case.name, letter["reason"])
    assert worker.status()["vocabulary"]["version"] == 1
    v2 = space_version(2, lambda d: d["attributes"].append({"code": "after_all", "description": "still alive"}))
    push(settings, v2)
    wait_for_version(worker, 2)
    assert worker.process.poll() is None


def test_a_second_vocabulary_pushed_while_images_flow_scores_every_image(stream_env, start_worker):
    """A new name is a vocabulary of its own: replayed over the stored embeddings, then scored
    for every image that arrives after it; the first vocabulary is untouched."""
    env, settings = stream_env
    ids = publish_copies(settings, 64)
    worker = start_worker(COLUMNIST_BATCH_SIZE=8)
    worker.wait_ready()
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") >= 8, 120, "a first batch")
    pets = vocabulary_from_dict({"name": "pets", "version": 1, "attributes": [
        {"code": "earth", "description": "a dog digging in the earth"}, {"code": "cat", "description": "a cat"}]})
    push(settings, pets)
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.vocabulary_applied FINAL WHERE vocab_name = 'pets'"),
               120, "pets to be applied")
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") == len(ids), 180,
               "every image")
    wait_for_scores(worker, len(ids) * (len(SPACE.codes) + len(pets.codes)))
    assert_invariant(worker, SPACE)
    assert_invariant(worker, pets)
    assert worker.scalar("SELECT count() FROM columnist.columns_pets WHERE cat IS NOT NULL") == len(ids)
    assert {v["name"] for v in worker.status()["vocabularies"]} == {"space", "pets"}


def test_a_broker_restart_mid_stream_loses_nothing(stream_env, start_worker, tmp_path):
    """The worker's own broker goes down and comes back (same data, same ports) while images
    flow: every event published before and after is stored, nothing half-written."""
    import asyncio

    from columnist.kafka.admin import create_topics
    from deploy.local import LocalKafka

    env, settings = stream_env
    kafka, worker = LocalKafka(tmp_path / "kafka").start(), None
    try:
        settings = settings.model_copy(update={"kafka": kafka.bootstrap})
        asyncio.run(create_topics(settings))
        worker = start_worker(COLUMNIST_KAFKA=kafka.bootstrap, COLUMNIST_BATCH_SIZE=8)
        worker.wait_ready()
        before = publish_copies(settings, 40, prefix="before")
        wait_until(lambda: worker.scalar("SELECT count() FROM columnist.image_embedding FINAL") >= 8, 120,
                   "a first batch")
        kafka.stop()
        kafka.start()
        after = publish_copies(settings, 40, prefix="after")
        wait_for_scores(worker, 80 * len(SPACE.codes), 240)  # images rows last: not the embeddings
        stored = {i for (i,) in worker.query("SELECT image_id FROM columnist.images FINAL")}
        assert stored == set(before + after)
        assert_invariant(worker, SPACE)
        assert worker.process.poll() is None
    finally:
        if worker is not None:
            worker.stop()  # before its broker: a worker without one waits long to shut down
        kafka.stop()


def test_a_worker_started_before_its_broker_waits_for_it(stream_env, start_worker, tmp_path):
    """A worker is a service: started while Kafka is down it waits (logging, with backoff),
    then begins once the broker comes, instead of exiting after a second."""
    import asyncio

    from columnist.kafka.admin import create_topics
    from deploy.local import LocalKafka

    env, settings = stream_env
    kafka = LocalKafka(tmp_path / "kafka")  # its port is chosen, nobody listens on it yet
    worker = start_worker(COLUMNIST_KAFKA=kafka.bootstrap)
    try:
        wait_until(lambda: "reaching Kafka at" in worker.tail(), 120, "the worker to say it is waiting for Kafka")
        wait_until(lambda: "(attempt 2)" in worker.tail(), 120, "a second attempt")
        assert worker.process.poll() is None
        kafka.start()
        settings = settings.model_copy(update={"kafka": kafka.bootstrap})
        asyncio.run(create_topics(settings))
        worker.wait_ready()
        ids = publish_copies(settings, 3)
        wait_until(lambda: worker.scalar("SELECT count() FROM columnist.images FINAL") == len(ids), 120, "the images")
    finally:
        worker.stop()
        kafka.stop()


def test_phone_media_and_videos_through_the_worker(stream_env, start_worker):
    """HEIC, AVIF, a DNG and a video published like any image: stored, the video with its
    frames and its row in the wide view; a vocabulary push reaches the frames and the video."""
    from bench import media as made

    env, settings = stream_env
    root = settings.roots[0]
    photo = made.photo("rocket.jpg")
    for name, data in {"a.heic": made.heic(photo), "b.avif": made.avif(photo), "c.dng": made.dng(photo)}.items():
        (root / name).write_bytes(data)
    made.video(root / "launch.mp4")
    worker = start_worker()
    worker.wait_ready()
    published = subprocess.run([sys.executable, "-m", "columnist", "publish", "images", str(root)], cwd=REPO,
                               env=worker.env, capture_output=True, text=True, timeout=120)
    assert published.returncode == 0 and "published 4 events" in published.stdout, published.stderr
    wait_until(lambda: worker.scalar("SELECT count() FROM columnist.images FINAL") == 4, 120, "the four files")
    launch = (root / "launch.mp4").as_uri()
    assert worker.query("SELECT kind, frames FROM columnist.images FINAL ORDER BY kind") == \
        [["image", 0], ["image", 0], ["image", 0], ["video", 4]]
    assert worker.scalar(f"SELECT count() FROM columnist.image_embedding FINAL WHERE image_id LIKE '{launch}#t=%'") == 4
    assert worker.scalar(f"SELECT count() FROM columnist.image_columns WHERE image_id = '{launch}'") == 1
    push(settings, space_version(2, lambda d: d["attributes"].append({"code": "solar_eclipse",
                                                                      "description": "a total solar eclipse"})))
    wait_for_version(worker, 2)
    assert worker.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL "
                         "WHERE attribute = 'solar_eclipse'") == 3 + 4 + 1  # stills, frames, the video
    assert worker.counters()["dead_letters"] == 0


def test_vocab_push_refuses_what_every_worker_would(stream_env, start_worker, tmp_path):
    """`vocab push` said "pushed" and exited 0 for documents every worker refuses: an older
    version, or the same version with other content. It now checks the topic (and the store
    through the worker) first, with tag's message and exit code 3."""
    env, settings = stream_env
    worker = start_worker()
    worker.wait_ready()

    def push_file(vocab, name):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(vocab.model_dump(mode="json", exclude_defaults=True)))
        return subprocess.run([sys.executable, "-m", "columnist", "vocab", "push", str(path)], cwd=REPO,
                              env=worker.env, capture_output=True, text=True, timeout=120)

    v2 = space_version(2, lambda d: d["attributes"].append({"code": "solar_eclipse", "description": "an eclipse"}))
    assert push_file(v2, "v2.yaml").returncode == 0
    wait_for_version(worker, 2)
    older = push_file(space_version(1, lambda d: d.update(description="an older edit")), "v1.yaml")
    assert older.returncode == 3 and "older than the applied v2" in older.stderr and "not pushed" in older.stderr
    other = push_file(space_version(2, lambda d: d.update(description="other content")), "v2b.yaml")
    assert other.returncode == 3 and "differs from the applied v2" in other.stderr
    again = push_file(v2, "v2-again.yaml")
    assert again.returncode == 0 and "nothing pushed" in again.stdout
    assert len(consume_all(settings, settings.topic_vocab, 2, timeout=10)) == 1  # only v2 was ever published


def test_a_worker_that_cannot_start_says_why_in_a_line_with_its_exit_code(stream_env, start_worker, tmp_path):
    """Start-up is checked before the worker joins its group: a database another worker owns
    (5), a socket another worker serves (5), a store of another model (3), a metrics port
    taken (3). Never exit 0, never a traceback."""
    import asyncio
    import socket

    from columnist.kafka.admin import group_client_ids

    env, settings = stream_env
    first = start_worker()
    first.wait_ready()
    wait_until(lambda: asyncio.run(group_client_ids(settings)), 60, "the first worker to join its group")

    def refused(expected: int, *words: str, **extra_env) -> None:
        worker = start_worker(**extra_env)
        assert worker.wait_exit(120) == expected, worker.tail()
        log = worker.tail(20)
        assert "Traceback" not in log and all(w in log for w in words), log

    refused(5, "is in use by another process", COLUMNIST_WORKER_PORT=str(free_port()))
    refused(5, "another worker", "serves", COLUMNIST_DB=f"chdb://{tmp_path / 'db2'}")
    subprocess.run([sys.executable, "-m", "columnist", "tag", str(PHOTOS), "--model", "mock", "--db",
                    f"chdb://{tmp_path / 'mock-db'}"], cwd=REPO, check=True, capture_output=True, timeout=300)
    refused(3, "serves model 'mock'", COLUMNIST_DB=f"chdb://{tmp_path / 'mock-db'}",
            COLUMNIST_WORKER_PORT=str(free_port()))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        refused(3, "is taken", COLUMNIST_METRICS_PORT=str(taken.getsockname()[1]),
                COLUMNIST_DB=f"chdb://{tmp_path / 'db3'}", COLUMNIST_WORKER_PORT=str(free_port()))
    # a second member of the group writing to another embedded store starts, and says so
    second = start_worker(COLUMNIST_DB=f"chdb://{tmp_path / 'db4'}", COLUMNIST_WORKER_PORT=str(free_port()))
    second.wait_ready()
    assert "another member of consumer group" in second.tail(400)
