"""Decoding camera photos at the size the model needs (JPEG DCT scaling), against a full
decode, on the same 12-megapixel JPEG in the same run: time per image, peak memory, and how
far the model's input and embedding move. `make bench` runs it; it prints ratios."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from columnist.models.images import decode  # noqa: E402
from columnist.models.registry import load_encoder  # noqa: E402
from bench.media import camera_jpeg  # noqa: E402


def seconds_per_image(data: bytes, encoder, at_least: int, rounds: int = 15) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.prepare_image(decode(data, "camera.jpg", at_least=at_least).image)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    data, encoder = camera_jpeg(), load_encoder("tiny-clip")
    full, reduced = (seconds_per_image(data, encoder, size) for size in (0, 2 * encoder.image_size))
    pixels = [encoder.prepare_image(decode(data, "c", at_least=size).image) for size in (0, 2 * encoder.image_size)]
    embeddings = encoder.encode_prepared(pixels)
    print(f"4000x3000 JPEG q90 ({len(data) / 1e6:.1f} MB), decode + preprocess to {encoder.image_size} px, median of 15:")
    print(f"  full decode        {full * 1000:7.1f} ms/image")
    print(f"  decoded at >= {2 * encoder.image_size} px {reduced * 1000:7.1f} ms/image   {full / reduced:.1f}x faster")
    print(f"  model input: mean |difference| {np.abs(pixels[0] - pixels[1]).mean():.4f} (normalised units); "
          f"embedding cosine {float(embeddings[0] @ embeddings[1]):.5f}")


if __name__ == "__main__":
    main()
