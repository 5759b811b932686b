"""What one photo costs to decode at the size the model needs, per kind, in one run.

A 12-megapixel camera photo (4000x3000, made from a real sample photo) written as JPEG, HEIC,
AVIF, JPEG XL and a camera RAW (DNG, with a full-size embedded preview and without one), and a
1080p H.264 video: each decoded and preprocessed to the model's input as the worker does it
(median of several runs), and for JPEG the full decode beside the one at the size needed (DCT
scaling), with how far the model's input and embedding move. `make bench` runs it; it prints a table
and writes bench/results/decode-*.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import media  # noqa: E402
from bench.model import machine  # noqa: E402
from columnist.models.images import decode  # noqa: E402
from columnist.models.registry import load_encoder  # noqa: E402
from columnist.models.video import VideoLimits, sample  # noqa: E402


def seconds_per_image(data: bytes, encoder, at_least: int, name: str, rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.prepare_image(decode(data, name, at_least=at_least).image)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def stills(encoder) -> tuple[dict, dict]:
    photo = media.photo("astronaut.jpg", (4000, 3000))
    files = {"jpeg": media.camera_jpeg(), "heic": media.heic(photo, quality=80), "avif": media.avif(photo, 70),
             "jxl": media.jxl(photo, 85), "dng (preview)": media.dng(photo, preview_side=4000),
             "dng (half-size develop)": media.dng(photo, preview_side=None)}
    at_least = encoder.image_size
    ms = {kind: 1000 * seconds_per_image(data, encoder, at_least, f"photo.{kind.split()[0]}", rounds=5 if
                                         "dng" in kind else 7) for kind, data in files.items()}
    ms["jpeg (full decode)"] = 1000 * seconds_per_image(files["jpeg"], encoder, 0, "photo.jpg")
    pixels = [encoder.prepare_image(decode(files["jpeg"], "c", at_least=size).image) for size in (0, at_least)]
    embeddings = encoder.encode_prepared(pixels)
    parity = {"input_mean_abs_difference": float(np.abs(pixels[0] - pixels[1]).mean()),
              "embedding_cosine": float(embeddings[0] @ embeddings[1])}
    sizes = {kind: len(data) for kind, data in files.items()}
    return {k: round(v, 1) for k, v in ms.items()}, {"parity": parity, "bytes": sizes}


def videos(encoder) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = media.video(Path(folder) / "clip.mp4", seconds=10, fps=30, size=(1920, 1080), crf="23")
        data = path.read_bytes()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        sampled = sample(data, VideoLimits(), 2 * encoder.image_size)
        for _, frame in sampled.frames:
            encoder.prepare_image(frame)
        times.append(time.perf_counter() - started)
    seconds = float(np.median(times))
    return {"video_seconds": 10, "fps": 30, "frames_kept": len(sampled.frames), "wall_s": round(seconds, 2),
            "decoded_frames_per_s": round(300 / seconds, 1), "video_seconds_per_s": round(10 / seconds, 1)}


def main() -> None:
    encoder = load_encoder("tiny-clip")
    ms, details = stills(encoder)
    clip = videos(encoder)
    print(f"12-megapixel photo (4000x3000) decoded and preprocessed to {encoder.image_size} px, median:")
    for kind, value in ms.items():
        print(f"  {kind:26} {value:8.1f} ms   {details['bytes'].get(kind, details['bytes']['jpeg']) / 1e6:5.1f} MB")
    print(f"  JPEG at the size needed vs full: {ms['jpeg (full decode)'] / ms['jpeg']:.1f}x faster; model input mean "
          f"|difference| {details['parity']['input_mean_abs_difference']:.4f}, embedding cosine "
          f"{details['parity']['embedding_cosine']:.5f}")
    print(f"1080p H.264, {clip['video_seconds']} s at {clip['fps']} fps: {clip['frames_kept']} frames kept in "
          f"{clip['wall_s']} s ({clip['decoded_frames_per_s']} frames decoded/s, {clip['video_seconds_per_s']} s of "
          "video per second)")
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    out = results / f"decode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine(), "decode_ms": ms, **details, "video": clip}, indent=2))
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
