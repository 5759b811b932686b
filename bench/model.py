"""Model speed on the full ViT-B/32 shape, per runtime and precision: ``make bench-model``.

onnxruntime fp32 and dynamic int8, and where OpenVINO is installed (the [openvino] extra)
OpenVINO f32, its default precision (bf16 on CPUs with bf16 units) and NNCF int8. Prints
images/s of the image tower at batch 1, 16, 32 and 64, text-tower ms per prompt, peak RSS and
the image embeddings' cosine to onnxruntime fp32 on the sample photos, each speed also as a
ratio to onnxruntime fp32 at batch 1 measured in the same run (the machine is shared and
noisy; ratios travel better than absolute numbers). Each configuration runs in its own
process so its peak RSS is its own. Random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / ".columnist" / "models"
BATCHES = (1, 16, 32, 64)
PROMPTS = [f"a photo of {thing}" for thing in (
    "the planet Earth seen from space", "the Moon", "an astronaut", "a rocket launching", "a porthole",
    "mission control", "a galaxy", "a space station", "solar panels", "a human hand", "a nebula",
    "a satellite", "a spacesuit helmet", "city lights at night", "clouds from above", "a robotic arm")] * 2


def configurations() -> list[tuple[str, Path, str]]:
    """(label, model directory, runtime) of everything measured, onnxruntime fp32 first."""
    import importlib.util

    fp32, int8 = ensure_models()
    runs = [("ort-fp32", fp32, "onnxruntime"), ("ort-int8", int8, "onnxruntime")]
    if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf"):
        ov_int8 = MODELS / "vit-b-32-openvino-int8"
        if not (ov_int8 / "model.json").exists():
            from columnist.models.openvino_runtime import quantize_for_openvino

            print(f"quantizing for OpenVINO with NNCF into {ov_int8} ...", flush=True)
            quantize_for_openvino(fp32, ov_int8, sorted((REPO / "tests" / "data" / "photos").glob("*.jpg")))
        runs += [("ov-f32", fp32, "openvino-f32"), ("ov-default", fp32, "openvino"), ("ov-int8", ov_int8, "openvino")]
    return runs


def ensure_models() -> tuple[Path, Path]:
    fp32, int8 = MODELS / "vit-b-32", MODELS / "vit-b-32-int8"
    if not (fp32 / "model.json").exists():
        print(f"exporting a random ViT-B/32 to {fp32} (needs the [export] extra) ...", flush=True)
        subprocess.run([sys.executable, "-m", "columnist", "model", "export", "--random", "vit-b-32",
                        "--name", "clip-vit-b-32-random", "--out", str(fp32)], check=True, cwd=REPO)
    if not (int8 / "model.json").exists():
        from columnist.models.quantize import quantize_model_dir

        quantize_model_dir(fp32, int8)
    return fp32, int8


def timed_runs(run, min_seconds: float, min_runs: int = 3) -> list[float]:
    run()  # warm-up: first run allocates and plans
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times


def measure(directory: Path, threads: int, seconds: float, runtime: str, batches=BATCHES) -> dict:
    """Run in a child process: one model's speeds, its embeddings of the sample photos and
    this process's peak RSS."""
    import numpy as np

    from columnist.models.clip import ClipEncoder
    from columnist.models.images import open_image

    encoder = ClipEncoder.from_directory(directory, threads=threads, runtime=runtime)
    photos = [open_image(p.read_bytes(), p.name) for p in sorted((REPO / "tests" / "data" / "photos").glob("*.jpg"))]
    pixels = np.random.default_rng(0).standard_normal((max(batches), 3, 224, 224)).astype(np.float32)
    session, feed = encoder.image_tower.session, encoder.image_tower.input_name
    images_per_s = {}
    for batch in batches:
        times = timed_runs(lambda: session.run(None, {feed: pixels[:batch]}), seconds)
        images_per_s[batch] = batch / statistics.median(times)
    ids = encoder.text_tower.tokenizer(PROMPTS)
    text_session, text_feed = encoder.text_tower.session, encoder.text_tower.input_name
    text_times = timed_runs(lambda: text_session.run(None, {text_feed: ids}), seconds / 2)
    return {
        "photo_embeddings": encoder.encode_images(photos).tolist(),
        "images_per_s": images_per_s,
        "text_ms_per_prompt": 1000 * statistics.median(text_times) / len(PROMPTS),
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM; getrusage's maxrss keeps the parent's
    peak across fork+exec, which made every child report the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    import onnxruntime

    from columnist.models.machine import MATRIX_UNITS, cpu_count, cpu_flags, cpu_name

    return {"cpu": cpu_name() or platform.processor(), "cores": cpu_count(),
            "flags": [flag for flag in MATRIX_UNITS if flag in cpu_flags()],
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: one per core)")
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum timing per measurement")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runtime", default="onnxruntime", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=lambda text: tuple(map(int, text.split(","))), default=BATCHES,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.threads, args.seconds, args.runtime, args.batches)))
        return

    results = {label: measure_in_child(directory, runtime, args.threads, args.seconds)
               for label, directory, runtime in configurations()}
    report(results)


def measure_in_child(directory: Path, runtime: str, threads: int = 0, seconds: float = 4.0,
                     batches: tuple[int, ...] = BATCHES) -> dict:
    """measure() in a process of its own (so its peak RSS is its own)."""
    print(f"measuring {directory.name} on {runtime} ...", flush=True)
    out = subprocess.run([sys.executable, "-m", "bench.model", "--child", str(directory), "--runtime", runtime,
                          "--threads", str(threads), "--seconds", str(seconds),
                          "--batches", ",".join(map(str, batches))],
                         check=True, cwd=REPO, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(results: dict) -> None:
    import numpy as np

    reference = results["ort-fp32"]
    baseline = reference["images_per_s"]["1"]
    print(f"\nimage tower, full ViT-B/32 shape; ratio = images/s over onnxruntime fp32 batch 1 ({baseline:.1f} img/s) "
          "in this run; cosine = the sample photos' embeddings against onnxruntime fp32 (min)")
    print(f"{'runtime':10} " + " ".join(f"{'batch ' + str(b):>18}" for b in BATCHES)
          + f" {'text ms/prompt':>16} {'peak RSS MB':>12} {'cosine':>8}")
    for label, r in results.items():
        cells = " ".join(f"{r['images_per_s'][str(b)]:8.1f} ({r['images_per_s'][str(b)] / baseline:4.2f}x)" for b in BATCHES)
        text_ratio = reference["text_ms_per_prompt"] / r["text_ms_per_prompt"]
        rss_ratio = r["peak_rss_mb"] / reference["peak_rss_mb"]
        cosine = float(np.min(np.sum(np.asarray(r.pop("photo_embeddings")) * np.asarray(reference["photo_embeddings"]),
                                     axis=1))) if label != "ort-fp32" else 1.0
        r["cosine_to_fp32"] = cosine
        print(f"{label:10} {cells} {r['text_ms_per_prompt']:7.1f} ({text_ratio:4.2f}x) {r['peak_rss_mb']:6.0f} "
              f"({rss_ratio:4.2f}x) {cosine:8.5f}")
    reference.pop("photo_embeddings", None)
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"model-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": machine(), "model": results}, indent=2))
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
