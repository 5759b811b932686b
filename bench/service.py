"""`make bench`: the product's promise measured end to end, as ratios within one run.

1. Encode path: images/s through the whole service (publish -> Kafka -> worker -> decode ->
   encode -> ClickHouse, until the last score is queryable) against raw onnxruntime on the
   same model, batch size and images; full ViT-B/32 shape, int8 and fp32; plus where the
   worker's time went (fetch+decode, preprocess+encode, score, write).
2. Replay: 1,000,000 stored embeddings; apply a vocabulary adding one attribute, then ten,
   through the worker's replay path; scores/s until queryable, and the ratio against
   re-encoding as many images at the measured encode rate.
3. Latency: ingest event to queryable score at half the measured peak rate, p50 and p99.
4. Memory: the worker's RSS with ViT-B/32 int8 loaded, idle and at its peak under load.

Everything it starts (a Kafka broker in its own folder, workers, databases under
.columnist/bench) it stops. Results: a table, and bench/results/bench-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.model import ensure_models, machine  # noqa: E402
from columnist.streams.worker.events import image_event  # noqa: E402
from deploy.local import LocalKafka, WorkerProcess, free_port, wait_until  # noqa: E402

STATE = REPO / ".columnist" / "bench"
PHOTOS = sorted((REPO / "tests" / "data" / "photos").glob("*.jpg"))
BATCH = 32


def log(text: str) -> None:
    print(text, flush=True)


# -- 1. encode path ----------------------------------------------------------------------

def raw_onnxruntime_rate(model_dir: Path, images: int) -> float:
    """images/s of the image tower alone on the same photos, batch size and threads."""
    from columnist.models.clip import ClipEncoder
    from columnist.models.images import open_image

    encoder = ClipEncoder.from_directory(model_dir, batch_size=BATCH)
    decoded = [open_image(p.read_bytes(), p.name) for p in PHOTOS]
    pixels = encoder.image_tower.pixels([decoded[i % len(decoded)] for i in range(images)])
    session, feed = encoder.image_tower.session, encoder.image_tower.input_name
    session.run(None, {feed: pixels[:BATCH]})  # warm-up
    start = time.perf_counter()
    for i in range(0, images, BATCH):
        session.run(None, {feed: pixels[i:i + BATCH]})
    return images / (time.perf_counter() - start)


def publish(bootstrap: str, topic: str, ids: list[str], root: Path, rate: float | None = None) -> dict[str, float]:
    """Publish one event per id (round-robin over the photos); return each id's send time."""
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
                uri = (root / PHOTOS[n % len(PHOTOS)].name).as_uri()
                await producer.send(topic, key=image_id.encode(), value=image_event(image_id, uri))
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    return asyncio.run(run())


def start_worker(kafka: LocalKafka, name: str, model_dir: Path, extra: dict | None = None) -> tuple[WorkerProcess, dict]:
    from columnist.streams.kafka.admin import create_topics
    from columnist.streams.settings import Settings

    db = STATE / f"db-{name}"
    shutil.rmtree(db, ignore_errors=True)
    env = {"COLUMNIST_KAFKA": kafka.bootstrap, "COLUMNIST_DB": f"chdb://{db}", "COLUMNIST_MODEL": str(model_dir),
           "COLUMNIST_IMAGE_ROOTS": str(STATE / "images"), "COLUMNIST_WORKER_PORT": free_port(),
           "COLUMNIST_GROUP": f"bench-{name}", "COLUMNIST_TOPIC_IMAGES": f"bench-{name}.images",
           "COLUMNIST_TOPIC_VOCAB": f"bench-{name}.vocab", "COLUMNIST_TOPIC_DEADLETTER": f"bench-{name}.deadletter",
           "COLUMNIST_BATCH_SIZE": BATCH, "COLUMNIST_BATCH_WITHIN": 0.2, **(extra or {})}
    settings = Settings(**{k.removeprefix("COLUMNIST_").lower(): v for k, v in env.items()})
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(env, STATE / f"worker-{name}.log")
    worker.wait_ready(300)
    return worker, env


def encode_path(kafka: LocalKafka, dtype: str, model_dir: Path, images: int) -> dict:
    raw = raw_onnxruntime_rate(model_dir, images)
    worker, env = start_worker(kafka, f"encode-{dtype}", model_dir)
    try:
        idle_rss = worker.rss_mb()
        attributes = worker.status()["vocabulary"]["attributes"]
        ids = [f"{dtype}-{i:06d}" for i in range(images)]
        start = time.time()
        publish(kafka.bootstrap, env["COLUMNIST_TOPIC_IMAGES"], ids, STATE / "images")
        wait_until(lambda: worker.counters()["score_rows"] >= images * attributes, 1800, f"{images} images scored")
        elapsed = time.time() - start
        queryable = worker.scalar("SELECT count() FROM columnist.image_embedding FINAL")
        counters = worker.counters()
        service = images / elapsed
        return {"raw_onnxruntime_images_per_s": raw, "service_images_per_s": service, "ratio_to_raw": service / raw,
                "images": images, "queryable_embeddings": queryable,
                "worker_seconds": {k: counters[k] for k in ("fetch_decode_s", "encode_s", "write_s")},
                "wall_seconds": elapsed, "idle_rss_mb": idle_rss, "peak_rss_mb": worker.rss_mb("VmHWM")}
    finally:
        worker.stop()


# -- 3 and 4. latency and memory ---------------------------------------------------------

def latency(kafka: LocalKafka, model_dir: Path, peak: float, seconds: float) -> dict:
    rate = peak / 2
    worker, env = start_worker(kafka, "latency", model_dir)
    try:
        idle_rss = worker.rss_mb()
        attributes = worker.status()["vocabulary"]["attributes"]
        ids = [f"lat-{i:06d}" for i in range(int(rate * seconds))]
        sent = publish(kafka.bootstrap, env["COLUMNIST_TOPIC_IMAGES"], ids, STATE / "images", rate=rate)
        wait_until(lambda: worker.counters()["score_rows"] >= len(ids) * attributes, 600, "latency run scored")
        rows = worker.query("SELECT image_id, toUnixTimestamp64Milli(max(updated_at)) "
                            "FROM columnist.feature_image_attribute FINAL GROUP BY image_id")
        delays = sorted(ms / 1000 - sent[image_id] for image_id, ms in rows)
        return {"rate_images_per_s": rate, "events": len(ids),
                "p50_s": float(np.percentile(delays, 50)), "p99_s": float(np.percentile(delays, 99)),
                "max_s": delays[-1], "idle_rss_mb": idle_rss, "peak_rss_mb": worker.rss_mb("VmHWM")}
    finally:
        worker.stop()


# -- 2. replay ---------------------------------------------------------------------------

def replay(embeddings: int, encode_rate: float) -> dict:
    """The worker's replay path (columnist.streams.vocabulary_change.apply_vocabulary) over synthetic embeddings."""
    from columnist.models.mock import MockEncoder
    from columnist.streams.store import connect
    from columnist.streams.vocabulary_change import apply_vocabulary
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

    def vocabulary(version: int, codes: list[str]):
        return vocabulary_from_dict({"name": "bench", "version": version, "attributes": [
            {"code": c, "description": f"attribute {c}"} for c in codes]})

    previous = vocabulary(1, ["a0"])
    store.apply_vocabulary(previous, encoder.name)
    for added in (1, 10):
        new_codes = [f"n{added}_{i}" for i in range(added)]
        new = vocabulary(previous.version + 1, [a.code for a in previous.attributes] + new_codes)
        start = time.perf_counter()
        report = apply_vocabulary(store, encoder, previous, new, chunks=0)
        counted = store.count_scores(new_codes)
        seconds = time.perf_counter() - start
        written = counted  # queryable scores of the new attributes (the final pass may rewrite a few)
        assert counted == embeddings * added, (counted, report)
        reencode_s = embeddings / encode_rate
        results[f"add_{added}"] = {"seconds": seconds, "scores": written, "scores_per_s": written / seconds,
                                   "reencode_seconds_at_measured_rate": reencode_s,
                                   "speedup_vs_reencode": reencode_s / seconds}
        log(f"  replay +{added}: {written:,} scores in {seconds:.1f} s = {written / seconds:,.0f} scores/s")
        previous = new
    store.close()
    return results


def try_speed(embeddings: int) -> dict:
    """`columnist try` over stored embeddings: the read out of ClickHouse and the compute."""
    from columnist.models.mock import MockEncoder
    from columnist.streams.workbench.gallery import try_description
    from columnist.streams.store import connect
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
    parser.add_argument("--images", type=int, default=512, help="images per encode-path run")
    parser.add_argument("--embeddings", type=int, default=1_000_000, help="stored embeddings for the replay")
    parser.add_argument("--latency-seconds", type=float, default=20)
    args = parser.parse_args()

    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "images").mkdir(exist_ok=True)
    for photo in PHOTOS:
        shutil.copy(photo, STATE / "images" / photo.name)
    fp32, int8 = ensure_models()
    results: dict = {"machine": machine(), "batch_size": BATCH}
    shutil.rmtree(STATE / "kafka", ignore_errors=True)
    with LocalKafka(STATE / "kafka") as kafka:
        for dtype, model_dir in (("int8", int8), ("fp32", fp32)):
            log(f"encode path, ViT-B/32 {dtype}: {args.images} images ...")
            results[f"encode_path_{dtype}"] = encode_path(kafka, dtype, model_dir, args.images)
        results["encode_path"] = results["encode_path_int8"]
        peak = results["encode_path_int8"]["service_images_per_s"]
        log(f"latency at half the int8 peak ({peak / 2:.1f} images/s) for {args.latency_seconds:.0f} s ...")
        results["latency"] = latency(kafka, int8, peak, args.latency_seconds)
    results["memory"] = {"rss_mb": results["latency"]["peak_rss_mb"], "idle_rss_mb": results["latency"]["idle_rss_mb"]}
    log(f"replay over {args.embeddings:,} stored embeddings ...")
    results["replay"] = replay(args.embeddings, results["encode_path_int8"]["raw_onnxruntime_images_per_s"])
    results["replay"]["scores_per_s"] = results["replay"]["add_1"]["scores_per_s"]
    log("columnist try over 100,000 stored embeddings ...")
    results["try"] = try_speed(100_000)
    report(results)


def report(r: dict) -> None:
    log("\n| measure | value | ratio (baseline in this run) |\n| --- | --- | --- |")
    for dtype in ("int8", "fp32"):
        e = r[f"encode_path_{dtype}"]
        w = e["worker_seconds"]
        busy = sum(w.values())
        split = ", ".join(f"{k[:-2]} {v / busy:.0%}" for k, v in w.items())
        log(f"| encode path {dtype} | {e['service_images_per_s']:.1f} img/s (raw onnxruntime {e['raw_onnxruntime_images_per_s']:.1f}) "
            f"| {e['ratio_to_raw']:.2f} x raw; worker time: {split} |")
    for added in (1, 10):
        p = r["replay"][f"add_{added}"]
        log(f"| replay, +{added} attribute(s), {r['replay']['embeddings']:,} embeddings | {p['scores_per_s']:,.0f} scores/s "
            f"({p['seconds']:.1f} s) | {p['speedup_vs_reencode']:.0f} x faster than re-encoding (int8 raw rate) |")
    t = r["try"]
    log(f"| `columnist try`, {t['embeddings']:,} embeddings | {t['total_s']:.2f} s (compute {t['compute_s']:.2f} s, "
        f"read {t['read_s']:.2f} s) | compute is {t['compute_s'] / t['total_s']:.0%} of the answer |")
    lat = r["latency"]
    log(f"| latency at {lat['rate_images_per_s']:.1f} img/s (half of peak) | p50 {lat['p50_s']:.2f} s, p99 {lat['p99_s']:.2f} s "
        f"| {lat['events']} events |")
    log(f"| worker RSS, ViT-B/32 int8 | idle {r['memory']['idle_rss_mb']:.0f} MB, peak under load {r['memory']['rss_mb']:.0f} MB "
        f"| {r['memory']['rss_mb'] / r['memory']['idle_rss_mb']:.2f} x idle |")
    r["encode_path"]["ratio_to_raw"] = r["encode_path_int8"]["ratio_to_raw"]
    r["latency"]["p50_s"], r["latency"]["p99_s"] = lat["p50_s"], lat["p99_s"]
    out = REPO / "bench" / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    log(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
