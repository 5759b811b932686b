"""`columnist tag` against a peer, Qdrant's fastembed, on the same ONNX image tower and the same images.

Each side is timed as a whole process, as a user meets it: (a) ``python -m columnist tag FILES
--model DIR --db chdb://NEW`` (a new store every run, so the vocabulary's prompts go through the
text tower each time, as on a first run) and (b) a child Python that imports fastembed, opens the
same image tower and embeds the same files (decode, preprocess, encode: the peer's whole job; it
neither scores nor stores). Runs alternate a, b, a, b so drift on a shared machine falls on both.
Printed: JSON with every run's seconds, the medians, and ``speed_ratio`` = peer / tag (above 1:
tag is faster, although it does more).

fastembed has no ``add_custom_model`` for images; it runs a registered model's class from a local
directory given as ``specific_model_path`` (then it downloads nothing). The registered name used,
Qdrant/clip-ViT-B-32-vision, only selects the class (first input fed, first output read, L2
normalised) and the file name ``model.onnx``. The directory is made here from columnist's
model.json: a link ``model.onnx`` to the image tower (and links to its siblings, for external
data) and a preprocessor_config.json with CLIP's shortest-side bicubic resize, centre crop,
mean and std, which fastembed's CLIPImageProcessor path turns into the same pixels as
columnist.models.preprocess (cosine 1.0 on the sample photos, ViT-B/32 shape).

fastembed is an optional extra: ``.venv/bin/pip install fastembed``. Same runtime (onnxruntime
CPU), same intra-op threads (``--threads``, default one per core, as columnist's default) and
same batch size on both sides.

    make bench-peer            (the sample photos and 12 MP JPEGs; writes bench/results/peer-*.json)
    .venv/bin/python -m bench.peer [--model DIR] [--runs 5] [FILES...]

Three ratios per image set: a first run (a new store: the vocabulary's prompts go through the
text tower once, then are stored); a run into a store that already holds them (the same
images with --force: decoded, encoded, scored and written again), which is what every later
run and every worker restart costs; and that run again with tag's own runtime choice
(``auto``, what a user gets: on AVX-512 or AMX CPUs OpenVINO, from the ``[openvino]`` extra
that `make setup` installs) against fastembed on its only runtime. The first two compare
the pipelines on one runtime; the third compares the two tools as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / ".columnist" / "models" / "vit-b-32"
PHOTOS = sorted((REPO / "tests" / "data" / "photos").glob("*.jpg"))
PEER_MODEL = "Qdrant/clip-ViT-B-32-vision"
"""A registered fastembed image model whose class does what a columnist CLIP tower needs."""

PEER_CHILD = """
import sys
from fastembed import ImageEmbedding
directory, threads, batch, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
model = ImageEmbedding({name!r}, specific_model_path=directory, local_files_only=True,
                       cache_dir=directory, threads=threads)
vectors = list(model.embed(files, batch_size=batch))
assert len(vectors) == len(files), (len(vectors), len(files))
"""
"""The peer's whole job in a fresh interpreter: import, open the tower, embed every file."""


def peer_directory(model: Path, into: Path) -> Path:
    """A directory fastembed loads without a download, made from a columnist model directory.

    SigLIP-style towers (squash resize) map to fastembed's height/width resize without crop; a
    tower whose embedding is not its first output cannot be fed to fastembed's class as it is."""
    from columnist.models.spec import ModelSpec

    spec = ModelSpec.read(model)
    if spec.visual_output:
        raise SystemExit(f"{model}: the embedding is output {spec.visual_output!r}; fastembed reads the first")
    into.mkdir(parents=True, exist_ok=True)
    visual = (model / spec.visual).resolve()
    for sibling in visual.parent.iterdir():  # external data is found beside the model file
        if sibling.is_file() and sibling.suffix not in (".json", ".onnx"):
            (into / sibling.name).symlink_to(sibling)
    (into / "model.onnx").symlink_to(visual)
    size = spec.image_size
    config = {"image_processor_type": "CLIPImageProcessor", "do_convert_rgb": True, "do_resize": True,
              "resample": 2 if spec.interpolation == "bilinear" else 3,  # PIL: BILINEAR 2, BICUBIC 3
              "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
              "image_mean": list(spec.mean), "image_std": list(spec.std)}
    if spec.resize == "squash":
        config.update(size={"height": size, "width": size}, do_center_crop=False)
    else:
        config.update(size={"shortest_edge": size}, do_center_crop=True, crop_size={"height": size, "width": size})
    (into / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return into


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - start


def compare(model: Path, files: list[Path], runs: int, threads: int, batch: int) -> dict:
    """Alternating whole-process runs of `columnist tag` and of the peer over ``files``; after
    each first run, `tag --force` into the store just made, whose prompts are already encoded
    (the same images decoded, encoded and scored again without the text tower's first-run cost)."""
    from importlib.metadata import version

    from columnist.models.registry import load_encoder

    env = {**os.environ, "COLUMNIST_RUNTIME": "onnxruntime", "COLUMNIST_THREADS": str(threads),
           "COLUMNIST_BATCH_SIZE": str(batch), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    as_shipped = {**env, "COLUMNIST_RUNTIME": "auto"}
    chosen = load_encoder(str(model), threads=threads, batch_size=batch, runtime="auto").runtime  # measured once here
    names = [str(f) for f in files]
    tag_s, peer_s, warm_s, auto_s = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="columnist-peer-") as work:
        peer = peer_directory(model, Path(work) / "fastembed-model")
        child = [sys.executable, "-c", PEER_CHILD.format(name=PEER_MODEL), str(peer), str(threads), str(batch)]
        for run in range(runs):
            db = Path(work) / f"db-{run}"
            tag = [sys.executable, "-m", "columnist", "tag", *names, "--model", str(model), "--db", f"chdb://{db}",
                   "--batch-size", str(batch)]
            tag_s.append(timed(tag, env))
            warm_s.append(timed([*tag, "--force"], env))
            auto_s.append(timed([*tag, "--force"], as_shipped))
            shutil.rmtree(db, ignore_errors=True)
            peer_s.append(timed([*child, *names], env))
            print(f"  run {run + 1}: tag {tag_s[-1]:.2f} s ({warm_s[-1]:.2f} s warm, {auto_s[-1]:.2f} s on {chosen}), "
                  f"fastembed {peer_s[-1]:.2f} s", file=sys.stderr, flush=True)
    tag_median, peer_median = statistics.median(tag_s), statistics.median(peer_s)
    extra = {"tag_warm_s": warm_s, "tag_warm_median_s": statistics.median(warm_s),
             "warm_speed_ratio": peer_median / statistics.median(warm_s),
             "auto_runtime": chosen, "tag_auto_s": auto_s, "auto_speed_ratio": peer_median / statistics.median(auto_s)}
    return {"model": str(model), "images": len(files), "runs": runs, "threads": threads, "batch_size": batch,
            "peer": f"fastembed {version('fastembed')} ({PEER_MODEL} class, local files)",
            "tag_s": tag_s, "peer_s": peer_s, "tag_median_s": tag_median, "peer_median_s": peer_median,
            "speed_ratio": peer_median / tag_median, **extra}


def image_sets() -> dict[str, list[Path]]:
    """The default image sets: 256 sample photos and 96 12-megapixel JPEGs, each file new content."""
    from bench.service import STATE, unique_jpegs

    print("making 256 sample photos and 96 12-megapixel JPEGs ...", file=sys.stderr, flush=True)
    return {"small": unique_jpegs(STATE / "peer-small", 256),
            "camera": unique_jpegs(STATE / "peer-camera", 96, (4000, 3000))}


def compare_sets(model: Path, sets: dict[str, list[Path]], runs: int, threads: int, batch: int) -> dict:
    """compare() over each image set, with a line per set saying how tag fared."""
    results = {}
    for name, files in sets.items():
        print(f"{name}: {len(files)} images, {runs} runs each ...", file=sys.stderr, flush=True)
        results[name] = r = compare(model, files, runs, threads, batch)
        print(f"  tag is {r['speed_ratio']:.2f} x fastembed on a first run, {r['warm_speed_ratio']:.2f} x into a "
              f"store that has the prompts (one runtime), {r['auto_speed_ratio']:.2f} x on its own choice "
              f"({r['auto_runtime']})", file=sys.stderr, flush=True)
    return results


def ratios(results: dict) -> dict:
    """Per image set: the three ratios (see the module's docstring), peer seconds / tag seconds."""
    return {name: {"first_run_ratio": r["speed_ratio"], "ratio": r["warm_speed_ratio"],
                   "as_shipped_ratio": r["auto_speed_ratio"], "as_shipped_runtime": r["auto_runtime"]}
            for name, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="images (default: 256 sample photos, 96 12 MP JPEGs)")
    parser.add_argument("--model", type=Path, default=MODEL, help="a columnist model directory")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each side (medians reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    sets = {"given": [f.resolve() for f in args.files]} if args.files else image_sets()
    results = compare_sets(args.model.resolve(), sets, args.runs, args.threads, args.batch_size)
    out = REPO / "bench" / "results" / f"peer-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(ratios(results), indent=2))
    print(f"wrote {out.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
