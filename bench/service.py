"""`make bench`: the product's promise measured end to end, as ratios within one run.

1. Runtimes: the image tower alone (ViT-B/32 shape, batch 32) on onnxruntime fp32 and int8
   and OpenVINO bf16 and int8, with the sample photos' cosine to onnxruntime fp32.
2. Encode path: images/s through the whole service (publish -> Kafka -> worker -> decode ->
   encode -> ClickHouse, until the last image row is stored) on the fastest runtime, over the
   fastest raw runtime; on the sample photos and on 12-megapixel camera JPEGs made from them
   (upscaled, q90). Every event carries new content (a JPEG comment makes each file unique),
   so nothing is reused from the store. The sample photos go through in three rounds of 512
   and the median round counts (this shared host drifts by about 10% between runs).
3. Replay: 1,000,000 stored embeddings; apply a vocabulary adding one attribute, then ten,
   through the worker's replay path, timed until the scores are stored (queryable). The
   loaded embeddings are merged first, as in a store that grew over days; a replay racing
   the merges of 2 GB written seconds before ran up to 1.7x slower on 2 cores.
4. Dashboard: the space vocabulary (50 attributes) over those 1,000,000 images; its wide
   view: a count with two thresholds, and the top 50 images by one attribute (each the median
   of three runs after a warm one), right after the replay and once merged.
5. Latency: ingest event to queryable score at half the measured peak rate, p50 and p99.
6. Memory: the worker's RSS, idle and at its peak under load.
7. Re-embed: a model migration's job (bench/reembed.py) over the sample photos stored with
   another model, on the fastest runtime, against the service's ingest rate on them.
8. Peer: `columnist tag` against fastembed on the same model files and images, whole process
   each (bench/peer.py, three alternating runs a side here; `make bench-peer` runs five).

Everything it starts (a Kafka broker in its own folder, workers, databases under
.columnist/bench) it stops. Results: a table, and bench/results/bench-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.model import configurations, machine, measure_in_child  # noqa: E402
from columnist.kafka.events import image_event  # noqa: E402
from deploy.local import LocalKafka, WorkerProcess, free_port, wait_until  # noqa: E402

STATE = REPO / ".columnist" / "bench"
PHOTOS = sorted((REPO / "tests" / "data" / "photos").glob("*.jpg"))
BATCH = 32


def log(text: str) -> None:
    print(text, flush=True)


# -- 1. runtimes --------------------------------------------------------------------------

RUNTIMES = {"onnxruntime_fp32": ("ort-fp32", "onnxruntime"), "onnxruntime_int8": ("ort-int8", "onnxruntime"),
            "openvino_bf16": ("ort-fp32", "openvino"), "openvino_int8": ("ov-int8", "openvino")}
"""Name in the results -> (the bench.model configuration whose model directory it runs, runtime)."""


def runtimes(seconds: float) -> tuple[dict, dict[str, tuple[Path, str]]]:
    """Each runtime's images/s (batch 32) and the sample photos' cosine to onnxruntime fp32."""
    directories = {label: directory for label, directory, _ in configurations()}
    measured, results, where = {}, {}, {}
    for name, (label, runtime) in RUNTIMES.items():
        if label not in directories:
            log(f"  {name}: skipped (the [openvino] extra is not installed)")
            continue
        where[name] = (directories[label], runtime)
        measured[name] = measure_in_child(directories[label], runtime, seconds=seconds, batches=(BATCH,))
    reference = np.asarray(measured["onnxruntime_fp32"]["photo_embeddings"])
    for name, m in measured.items():
        cosine = float(np.min(np.sum(np.asarray(m["photo_embeddings"]) * reference, axis=1)))
        results[name] = {"img_s": m["images_per_s"][str(BATCH)], "cosine_min": cosine,
                         "text_ms_per_prompt": m["text_ms_per_prompt"], "peak_rss_mb": m["peak_rss_mb"]}
        log(f"  {name}: {results[name]['img_s']:.1f} img/s, cosine to fp32 >= {cosine:.5f}")
    return results, where


def tag_fixed_cost(model: tuple[Path, str]) -> dict:
    """`columnist tag` of one photo, whole process: the first run (a new store, the vocabulary's
    prompts encoded once) and a second with nothing to do (the fixed cost of a run)."""
    import subprocess

    db = STATE / "db-tag-fixed"
    shutil.rmtree(db, ignore_errors=True)
    env = {**os.environ, "COLUMNIST_RUNTIME": model[1]}
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "columnist", "tag", str(PHOTOS[0]), "--model", str(model[0]), "--db",
                        f"chdb://{db}"], cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
        seconds.append(time.perf_counter() - start)
    log(f"  tag of one photo: {seconds[0]:.2f} s, then {seconds[1]:.2f} s with nothing to do")
    return {"first_s": seconds[0], "fixed_s": seconds[1], "model": f"{model[0].name} on {model[1]}"}


def peer(runs: int) -> dict:
    """bench/peer.py's ratios, ``small_ratio`` and ``camera_ratio`` being tag into a store that
    has the prompts, on fastembed's runtime (onnxruntime fp32): the pipelines compared."""
    from importlib.util import find_spec

    from bench import peer as side_by_side

    if find_spec("fastembed") is None:
        reason = "fastembed is not installed (the [bench] extra: make bench installs it)"
        log(f"  peer not measured: {reason}")
        return {"skipped": reason}
    results = side_by_side.compare_sets(side_by_side.MODEL, side_by_side.image_sets(), runs,
                                         os.cpu_count() or 1, BATCH)
    ratios = side_by_side.ratios(results)
    return {"small_ratio": ratios["small"]["ratio"], "camera_ratio": ratios["camera"]["ratio"],
            "ratios": ratios, "runs": results}


def auto_choice(measured: dict) -> dict:
    """What ``auto`` picks for each model variant on this CPU (measured afresh, with the
    bench's own cache), against the fastest runtime measured above."""
    from columnist.models.runtime_choice import choose
    from columnist.models.spec import ModelSpec

    cache = STATE / "runtimes.json"
    cache.unlink(missing_ok=True)
    picks = {}
    for label, directory, _ in configurations():
        if label in ("ort-fp32", "ort-int8", "ov-int8"):
            choice = choose(directory, ModelSpec.read(directory), batch_size=BATCH, cache=cache)
            picks[label] = {"runtime": choice.runtime, "img_s": choice.img_s.get(choice.runtime, 0.0),
                            "measured": choice.img_s, "cosine": choice.cosine}
            log(f"  auto for {label}: {choice.describe()}")
    for label, pick in picks.items():  # the rate of what auto chose, as the runtimes above measured it (in a child)
        name = next((n for n, (lab, runtime) in RUNTIMES.items() if lab == label and runtime == pick["runtime"]), None)
        if name in measured:
            pick["img_s"] = measured[name]["img_s"]
    best = max(picks, key=lambda label: picks[label]["img_s"])
    fastest = max(m["img_s"] for m in measured.values())
    return {"runtime": f"{best} on {picks[best]['runtime']}", "img_s": picks[best]["img_s"], "fastest_img_s": fastest,
            "ratio_to_fastest": picks[best]["img_s"] / fastest, "variants": picks}


# -- 2. encode path ----------------------------------------------------------------------

def unique_jpegs(folder: Path, count: int, size: tuple[int, int] | None = None) -> list[Path]:
    """``count`` JPEG files made from the sample photos (upscaled to ``size`` and saved at q90
    when given), each with a comment naming it, so every file is new content."""
    import io

    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sources = []
    for photo in PHOTOS:
        if size is None:
            sources.append(photo.read_bytes())
            continue
        buffer = io.BytesIO()
        Image.open(photo).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        sources.append(buffer.getvalue())
    files = []
    for n in range(count):
        data = sources[n % len(sources)]
        comment = f"columnist bench {n}".encode()
        path = folder / f"{n:05d}.jpg"
        path.write_bytes(data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:])
        files.append(path)
    return files


def publish(bootstrap: str, topic: str, ids: list[str], files: list[Path], rate: float | None = None) -> dict[str, float]:
    """Publish one event per id (id n is file n); return each id's send time."""
    from aiokafka import AIOKafkaProducer

    async def run() -> dict[str, float]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        await producer.start()
        sent: dict[str, float] = {}
        start = time.time()
        try:
            for n, image_id in enumerate(ids):
                if rate:
                    await asyncio.sleep(max(0.0, start + n / rate - time.time()))  # pace the load
                sent[image_id] = time.time()
                await producer.send(topic, key=image_id.encode(), value=image_event(image_id, files[n].as_uri()))
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    return asyncio.run(run())


def start_worker(kafka: LocalKafka, name: str, model: tuple[Path, str], extra: dict | None = None) -> tuple[WorkerProcess, dict]:
    from columnist.kafka.admin import create_topics
    from columnist.settings import Settings

    db = STATE / f"db-{name}"
    shutil.rmtree(db, ignore_errors=True)
    env = {"COLUMNIST_KAFKA": kafka.bootstrap, "COLUMNIST_DB": f"chdb://{db}", "COLUMNIST_MODEL": str(model[0]),
           "COLUMNIST_RUNTIME": model[1], "COLUMNIST_IMAGE_ROOTS": str(STATE), "COLUMNIST_WORKER_PORT": free_port(),
           "COLUMNIST_GROUP": f"bench-{name}", "COLUMNIST_TOPIC_IMAGES": f"bench-{name}.images",
           "COLUMNIST_TOPIC_VOCAB": f"bench-{name}.vocab", "COLUMNIST_TOPIC_DEADLETTER": f"bench-{name}.deadletter",
           "COLUMNIST_BATCH_SIZE": BATCH, "COLUMNIST_BATCH_WITHIN": 0.2, **(extra or {})}
    settings = Settings(**{k.removeprefix("COLUMNIST_").lower(): v for k, v in env.items()})
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(env, STATE / f"worker-{name}.log")
    worker.wait_ready(300)
    return worker, env


def encode_path(kafka: LocalKafka, name: str, model: tuple[Path, str], rounds: list[list[Path]], raw: float) -> dict:
    """The service end to end on each round of files (each new content; one worker, the rounds
    one after another) against the raw rate ``raw``; its rate is the median round's, as this
    shared host's rates drift by about 10% from one run to the next."""
    worker, env = start_worker(kafka, f"encode-{name}", model)
    try:
        idle_rss = worker.rss_mb()
        attributes = worker.status()["vocabulary"]["attributes"]
        walls, done = [], 0
        for n, files in enumerate(rounds):
            ids = [f"{name}-{n}-{i:06d}" for i in range(len(files))]
            start = time.time()
            publish(kafka.bootstrap, env["COLUMNIST_TOPIC_IMAGES"], ids, files)
            done += len(files)
            scored(worker, done * attributes, 1800, BATCH * attributes)
            walls.append(last_score_at(worker, f"{name}-{n}-") - start)
        counters = worker.counters()
        assert counters["images_decoded"] == done, counters  # nothing reused: every image decoded and encoded
        rates = [len(files) / wall for files, wall in zip(rounds, walls)]
        service = statistics.median(rates)
        log(f"  {name}: {service:.1f} img/s through the service (median of {', '.join(f'{r:.1f}' for r in rates)}), "
            f"{service / raw:.2f} x the fastest raw runtime")
        return {"service_img_s": service, "rounds_img_s": rates, "fastest_raw_img_s": raw,
                "ratio_to_fastest_raw": service / raw, "runtime": f"{model[0].name} on {model[1]}",
                "images": len(rounds[0]), "rounds": len(rounds),
                "worker_seconds": {k: counters[k] for k in ("fetch_decode_s", "encode_s", "write_s")},
                "wall_seconds": walls, "idle_rss_mb": idle_rss, "peak_rss_mb": worker.rss_mb("VmHWM")}
    finally:
        worker.stop()


def scored(worker: WorkerProcess, rows: int, timeout: float, batch_rows: int) -> None:
    """Return once the worker has written ``rows`` score rows: asking every half second while
    more than two batches (of ``batch_rows``) remain, as a status costs the worker about 4 ms
    of CPU, which its encoder pays about twice on two cores (asked five times a second, 2-4%
    of the rate measured); then every 50 ms. The end of a round is read from the rows
    (last_score_at), not from when this saw them."""
    deadline = time.monotonic() + timeout
    while (written := worker.counters()["score_rows"]) < rows:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{written} of {rows} score rows written in {timeout:.0f} s")
        time.sleep(0.5 if written < rows - 2 * batch_rows else 0.05)


def last_score_at(worker: WorkerProcess, prefix: str) -> float:
    """When the last image whose id starts with ``prefix`` was stored: its images row's
    ``ingested_at``, made as the last statement of its write begins (that row is what makes
    an image's scores visible in the views; the statement ends a few milliseconds later).
    The end of a round, whenever the bench's polling saw it: a busy worker writes several
    batches at once (COLUMNIST_WRITE_GROUP), so polling every half second until two batches
    remain could oversleep the last write by up to half a second."""
    ms = worker.scalar("SELECT toUnixTimestamp64Milli(max(ingested_at)) FROM columnist.images "
                       f"WHERE startsWith(image_id, '{prefix}')")
    return ms / 1000


def decode_cpu_s(directory: Path, files: list[Path]) -> float:
    """CPU seconds per image of the worker's decode stage (hash, decode at the size needed,
    preprocess: pipeline.prepare), one thread, nothing else running."""
    from columnist.models.clip import ClipEncoder
    from columnist.pipeline import prepare

    preparer = ClipEncoder.from_directory(directory, runtime="onnxruntime")  # its towers open on first use: never here
    blobs = [path.read_bytes() for path in files]
    prepare(blobs[0], "warm", preparer, "warm", "file:///warm")
    start = time.thread_time()
    for n, data in enumerate(blobs):
        prepare(data, str(n), preparer, str(n), f"file:///{n}")
    return (time.thread_time() - start) / len(blobs)


def with_bound(result: dict, decode_s: float) -> dict:
    """The two-stage bound on two cores: every image costs its decode CPU plus the encode's
    (the raw rate uses both cores), so no pipeline beats 1 / (decode + 1 / raw)."""
    bound = 1 / (decode_s + 1 / result["fastest_raw_img_s"])
    efficiency = result["service_img_s"] / bound
    log(f"  decode {decode_s * 1000:.1f} ms CPU an image: bound {bound:.1f} img/s, service at {efficiency:.2f} of it")
    return {**result, "decode_cpu_ms": decode_s * 1000, "bound_img_s": bound, "efficiency": efficiency}


def reembed(model: tuple[Path, str], files: list[Path], ingest_rate: float) -> dict:
    """bench/reembed.py in its own process (one embedded database a process)."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "bench.reembed", "--model", str(model[0]), "--runtime", model[1],
                           *map(str, files)], cwd=REPO, capture_output=True, text=True, check=True, timeout=3600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(ingest_img_s=ingest_rate, ratio_to_ingest=result["img_s"] / ingest_rate)
    log(f"  re-embed: {result['img_s']:.1f} img/s, {result['ratio_to_ingest']:.2f} x the service's ingest rate")
    return result


# -- 5 and 6. latency and memory ---------------------------------------------------------

def latency(kafka: LocalKafka, model: tuple[Path, str], files: list[Path], peak: float, seconds: float) -> dict:
    rate = peak / 2
    worker, env = start_worker(kafka, "latency", model)
    try:
        idle_rss = worker.rss_mb()
        attributes = worker.status()["vocabulary"]["attributes"]
        ids = [f"lat-{i:06d}" for i in range(min(len(files), int(rate * seconds)))]
        sent = publish(kafka.bootstrap, env["COLUMNIST_TOPIC_IMAGES"], ids, files, rate=rate)
        wait_until(lambda: worker.counters()["score_rows"] >= len(ids) * attributes, 600, "latency run scored")
        rows = worker.query("SELECT image_id, toUnixTimestamp64Milli(max(updated_at)) "
                            "FROM columnist.feature_image_attribute FINAL GROUP BY image_id")
        delays = sorted(ms / 1000 - sent[image_id] for image_id, ms in rows)
        return {"rate_images_per_s": rate, "events": len(ids),
                "p50_s": float(np.percentile(delays, 50)), "p99_s": float(np.percentile(delays, 99)),
                "max_s": delays[-1], "idle_rss_mb": idle_rss, "peak_rss_mb": worker.rss_mb("VmHWM")}
    finally:
        worker.stop()


# -- 3 and 4. replay and dashboard ---------------------------------------------------------

def replay(embeddings: int, encode_rate: float) -> tuple[dict, dict]:
    """The worker's replay path (columnist.vocabulary_change.apply_vocabulary) over
    synthetic embeddings; then the dashboard queries over the space vocabulary's wide view."""
    from columnist.models.mock import MockEncoder
    from columnist.store import connect
    from columnist.vocabulary_change import apply_vocabulary
    from columnist.vocab.schema import vocabulary_from_dict

    db = STATE / "db-replay"
    shutil.rmtree(db, ignore_errors=True)
    store = connect(f"chdb://{db}")
    encoder = MockEncoder()
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for offset in range(0, embeddings, 100_000):
        n = min(100_000, embeddings - offset)
        vectors = rng.standard_normal((n, encoder.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.write_embeddings(encoder.name, [f"r{offset + i:07d}" for i in range(n)], vectors)
    results = {"embeddings": embeddings, "load_s": time.perf_counter() - start}
    start = time.perf_counter()
    store.client.command("OPTIMIZE TABLE columnist.image_embedding FINAL")  # settled, as a store that grew over days
    results["settle_s"] = time.perf_counter() - start

    def vocabulary(version: int, codes: list[str]):
        return vocabulary_from_dict({"name": "bench", "version": version, "attributes": [
            {"code": c, "description": f"attribute {c}"} for c in codes]})

    previous = vocabulary(1, ["a0"])
    store.apply_vocabulary(previous, encoder.name)
    for added, key in ((1, "one_attribute_s"), (10, "ten_attributes_s")):
        new_codes = [f"n{added}_{i}" for i in range(added)]
        new = vocabulary(previous.version + 1, [a.code for a in previous.attributes] + new_codes)
        start = time.perf_counter()
        report = apply_vocabulary(store, encoder, previous, new, chunks=0)  # returns once the scores are stored
        seconds = time.perf_counter() - start
        assert report.stored_scores == embeddings * added, report
        reencode_s = embeddings / encode_rate
        results[key] = seconds
        results[f"add_{added}"] = {"seconds": seconds, "scores": report.stored_scores,
                                   "scores_per_s": report.stored_scores / seconds, "chunks": report.replay.chunks,
                                   "reencode_seconds_at_measured_rate": reencode_s,
                                   "speedup_vs_reencode": reencode_s / seconds}
        log(f"  replay +{added}: {report.stored_scores:,} scores in {seconds:.2f} s "
            f"({reencode_s / seconds:,.0f} x faster than re-encoding at the fastest raw rate)")
        previous = new
    dashboard = dashboard_queries(store, encoder, embeddings)
    store.close()
    return results, dashboard


def dashboard_queries(store, encoder, images: int) -> dict:
    """The space vocabulary applied over the stored embeddings (a replay of every attribute),
    one image row per embedding, then two dashboard queries on its wide view: right after the
    replay (many fresh parts: FINAL merges them at query time) and once merged."""
    from columnist.vocabulary_change import apply_vocabulary
    from columnist.vocab.schema import load_vocabulary

    space = load_vocabulary(REPO / "vocab" / "space.yaml")
    start = time.perf_counter()
    apply_vocabulary(store, encoder, None, space, chunks=0)
    whole = time.perf_counter() - start
    store.client.command("INSERT INTO columnist.images (image_id, uri, collection, width, height, sha256, ingested_at) "
                         "SELECT image_id, concat('file:///bench/', image_id, '.jpg'), 'bench', 4000, 3000, sha256, "
                         "now64(3) FROM columnist.image_embedding")
    a, b = space.codes[0], space.codes[1]
    named = f"columnist.some_columns_space(codes = ['{a}', '{b}'])"  # reads only the two attributes' rows
    queries = {"count_two_thresholds": f"SELECT count() FROM columnist.columns_space WHERE `{a}` > 0.5 AND `{b}` > 0.5",
               "top_50": f"SELECT image_id, uri, `{a}` FROM columnist.columns_space ORDER BY `{a}` DESC LIMIT 50",
               "named_count_two_thresholds": f"SELECT count() FROM {named} WHERE `{a}` > 0.5 AND `{b}` > 0.5",
               "named_top_50": f"SELECT image_id, uri, `{a}` FROM {named} ORDER BY `{a}` DESC LIMIT 50"}

    def timed() -> dict:
        """Each query's median of three runs, after one that warms the file system cache."""
        out = {}
        for label, sql in queries.items():
            store.query(sql)
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                store.query(sql)
                runs.append(time.perf_counter() - start)
            out[label] = statistics.median(runs)
        return out

    fresh = timed()
    parts = store.scalar("SELECT count() FROM system.parts WHERE database = 'columnist' "
                         "AND table = 'feature_image_attribute' AND active")
    store.client.command("OPTIMIZE TABLE columnist.feature_image_attribute FINAL")
    store.client.command("OPTIMIZE TABLE columnist.images FINAL")
    merged = timed()
    wide = ("count_two_thresholds", "top_50")
    result = {"query_s": max(merged[k] for k in wide), "right_after_replay_s": max(fresh[k] for k in wide),
              "named_query_s": max(v for k, v in merged.items() if k not in wide),
              "named_right_after_replay_s": max(v for k, v in fresh.items() if k not in wide), "images": images, "attributes": len(space.codes),
              "merged": merged, "right_after_replay": {**fresh, "parts": parts},
              "replay_whole_vocabulary_s": whole}
    log(f"  space vocabulary ({len(space.codes)} attributes) replayed over {images:,} images in {whole:.1f} s; "
        f"dashboard: count {merged['count_two_thresholds']:.2f} s, top 50 {merged['top_50']:.2f} s "
        f"(right after the replay, {parts} parts: {fresh['count_two_thresholds']:.2f} s, {fresh['top_50']:.2f} s)")
    return result


def try_speed(embeddings: int) -> dict:
    """`columnist try` over stored embeddings: the read out of ClickHouse and the compute."""
    from columnist.models.mock import MockEncoder
    from columnist.workbench.gallery import try_description
    from columnist.store import connect
    from columnist.vocab.schema import vocabulary_from_dict

    db = STATE / "db-try"
    shutil.rmtree(db, ignore_errors=True)
    store = connect(f"chdb://{db}")
    encoder = MockEncoder()
    vectors = np.random.default_rng(1).standard_normal((embeddings, encoder.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for offset in range(0, embeddings, 100_000):
        chunk = vectors[offset:offset + 100_000]
        store.write_embeddings(encoder.name, [f"t{offset + i:07d}" for i in range(len(chunk))], chunk)
    vocab = vocabulary_from_dict({"name": "t", "version": 1, "attributes": [{"code": "a", "description": "a"}]})
    start = time.perf_counter()
    results = try_description(store, encoder, vocab, "a spacecraft window or porthole")
    results.top(10), results.borderline(10)
    total = time.perf_counter() - start
    start = time.perf_counter()
    _, stored = store.read_embeddings(encoder.name)
    read = time.perf_counter() - start
    store.close()
    from columnist.vocab.scoring import clip_logits, sigmoid

    start = time.perf_counter()  # the compute alone: one matrix product, the sigmoid, top and borderline
    text = encoder.encode_texts(["a photo of a spacecraft window or porthole"])[0]
    scores = sigmoid(clip_logits(stored, text, encoder.logit_scale), 25.0, 2.5)
    np.argsort(-scores)[:10], np.argsort(np.abs(scores - 0.5))[:10]
    compute = time.perf_counter() - start
    assert len(results.ids) == embeddings
    log(f"  try over {embeddings:,}: {total:.2f} s in all; reading the embeddings {read:.2f} s, compute {compute:.3f} s")
    return {"embeddings": embeddings, "total_s": total, "read_s": read, "compute_s": compute}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="images per encode-path round on the sample photos")
    parser.add_argument("--rounds", type=int, default=3, help="encode-path rounds on the sample photos (the median "
                        "is reported; the 12 MP JPEGs, well above their target, run once)")
    parser.add_argument("--camera-images", type=int, default=192, help="12-megapixel JPEGs through the service")
    parser.add_argument("--embeddings", type=int, default=1_000_000, help="stored embeddings for the replay")
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per runtime")
    parser.add_argument("--peer-runs", type=int, default=3, help="alternating runs a side against fastembed")
    args = parser.parse_args()

    STATE.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "batch_size": BATCH}
    log("runtimes, image tower alone (batch 32) ...")
    results["runtimes"], models = runtimes(args.seconds)
    fastest = max(results["runtimes"], key=lambda name: results["runtimes"][name]["img_s"])
    raw = results["runtimes"][fastest]["img_s"]
    results["fastest_runtime"] = fastest
    log("auto: each model variant's runtimes timed as a worker's first start times them ...")
    results["auto"] = auto_choice(results["runtimes"])
    samples = unique_jpegs(STATE / "samples", args.images * args.rounds)
    rounds = [samples[n * args.images:(n + 1) * args.images] for n in range(args.rounds)]
    samples = rounds[0]
    log(f"making {args.camera_images} 12-megapixel JPEGs (4000x3000, q90) ...")
    cameras = unique_jpegs(STATE / "camera", args.camera_images, (4000, 3000))
    shutil.rmtree(STATE / "kafka", ignore_errors=True)
    with LocalKafka(STATE / "kafka") as kafka:
        log(f"encode path on {fastest}: {len(samples)} sample photos, then {len(cameras)} 12 MP JPEGs ...")
        results["encode_path"] = with_bound(encode_path(kafka, "samples", models[fastest], rounds, raw),
                                            decode_cpu_s(models[fastest][0], samples))
        results["photos_12mp"] = with_bound(encode_path(kafka, "camera", models[fastest], [cameras], raw),
                                            decode_cpu_s(models[fastest][0], cameras))
        log("re-embed (a model migration's job) over the sample photos ...")
        results["reembed"] = reembed(models[fastest], samples, results["encode_path"]["service_img_s"])
        peak = results["encode_path"]["service_img_s"]
        log(f"latency at half the peak ({peak / 2:.1f} images/s) for {args.latency_seconds:.0f} s ...")
        results["latency"] = latency(kafka, models[fastest], samples, peak, args.latency_seconds)
    shutil.rmtree(STATE / "camera", ignore_errors=True)
    results["memory"] = {"rss_mb": results["latency"]["peak_rss_mb"], "idle_rss_mb": results["latency"]["idle_rss_mb"]}
    log(f"replay over {args.embeddings:,} stored embeddings ...")
    results["replay"], results["dashboard"] = replay(args.embeddings, raw)
    log("columnist tag's fixed cost ...")
    results["tag"] = tag_fixed_cost(models[fastest])
    log("columnist try over 100,000 stored embeddings ...")
    results["try"] = try_speed(100_000)
    log(f"columnist tag against fastembed, {args.peer_runs} alternating runs a side ...")
    results["peer"] = peer(args.peer_runs)
    report(results)


def report(r: dict) -> None:
    log("\n| measure | value | ratio (baseline in this run) | target |\n| --- | --- | --- | --- |")
    ort_int8 = r["runtimes"]["onnxruntime_int8"]["img_s"]
    for name, m in r["runtimes"].items():
        target = "≥ 1.5 x onnxruntime int8, cosine ≥ 0.999" if name == "openvino_int8" else "cosine ≥ 0.999"
        log(f"| {name}, image tower, batch {r['batch_size']} | {m['img_s']:.1f} img/s, cosine ≥ {m['cosine_min']:.5f} "
            f"| {m['img_s'] / ort_int8:.2f} x onnxruntime int8 | {target} |")
    a = r["auto"]
    log(f"| `auto` (measured at first start) | {a['runtime']}: {a['img_s']:.1f} img/s | {a['ratio_to_fastest']:.2f} x "
        f"the fastest runtime above | ≥ 0.95 |")
    for key, label, target in (("encode_path", "sample photos", "≥ 0.9"), ("photos_12mp", "12 MP JPEGs", "≥ 0.85")):
        e = r[key]
        log(f"| service, {label} ({e['runtime']}) | {e['service_img_s']:.1f} img/s | {e['efficiency']:.2f} x the "
            f"two-stage bound {e['bound_img_s']:.1f} (decode {e['decode_cpu_ms']:.1f} ms CPU + encode at "
            f"{e['fastest_raw_img_s']:.1f} img/s); {e['ratio_to_fastest_raw']:.2f} x raw | {target} |")
    rp = r["replay"]
    for added, key, target in ((1, "one_attribute_s", "≤ 1.5 s"), (10, "ten_attributes_s", "≤ 5 s")):
        log(f"| replay, +{added} attribute(s), {rp['embeddings']:,} embeddings | {rp[key]:.2f} s "
            f"| {rp[f'add_{added}']['speedup_vs_reencode']:,.0f} x faster than re-encoding | {target} |")
    d = r["dashboard"]
    log(f"| dashboard, wide view, {d['images']:,} images x {d['attributes']} attributes | count {d['merged']['count_two_thresholds']:.2f} s, "
        f"top 50 {d['merged']['top_50']:.2f} s | right after the replay ({d['right_after_replay']['parts']} parts): "
        f"{d['right_after_replay_s']:.2f} s | ≤ 1 s |")
    log(f"| the same two queries on `some_columns_space(codes=[...])` (only the attributes named are read) | "
        f"{d['named_query_s']:.2f} s | right after the replay: {d['named_right_after_replay_s']:.2f} s | ≤ 1 s |")
    re = r["reembed"]
    log(f"| re-embed (model migration), {re['images']} sample photos | {re['img_s']:.1f} img/s | "
        f"{re['ratio_to_ingest']:.2f} x the service's ingest rate ({re['ingest_img_s']:.1f}) | |")
    tg = r["tag"]
    log(f"| `columnist tag` of one photo ({tg['model']}), whole process | {tg['first_s']:.2f} s; nothing to do: "
        f"{tg['fixed_s']:.2f} s | | fixed cost < 1 s beyond loading the model |")
    p = r["peer"]
    if "skipped" in p:
        log(f"| `columnist tag` ÷ fastembed | not measured: {p['skipped']} | | |")
    else:
        for name, label, target in (("small", "256 sample photos", "≥ 1.0"), ("camera", "96 12 MP JPEGs", "≥ 1.3")):
            q = p["ratios"][name]
            log(f"| `columnist tag` ÷ fastembed, {label}, whole process | {q['ratio']:.2f} x on onnxruntime fp32 both "
                f"| {q['as_shipped_ratio']:.2f} x on tag's own choice ({q['as_shipped_runtime']}) | {target} |")
    t = r["try"]
    log(f"| `columnist try`, {t['embeddings']:,} embeddings | {t['total_s']:.2f} s (compute {t['compute_s']:.2f} s, "
        f"read {t['read_s']:.2f} s) | compute is {t['compute_s'] / t['total_s']:.0%} of the answer | |")
    lat = r["latency"]
    log(f"| latency at {lat['rate_images_per_s']:.1f} img/s (half of peak) | p50 {lat['p50_s']:.2f} s, p99 {lat['p99_s']:.2f} s "
        f"| {lat['events']} events | |")
    log(f"| worker RSS, {r['encode_path']['runtime']} | idle {r['memory']['idle_rss_mb']:.0f} MB, peak under load "
        f"{r['memory']['rss_mb']:.0f} MB | {r['memory']['rss_mb'] / r['memory']['idle_rss_mb']:.2f} x idle | |")
    out = REPO / "bench" / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    log(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
