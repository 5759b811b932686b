"""``auto``: the runtime a model runs fastest on, on this CPU, measured once and remembered.

Which runtime wins depends on the CPU by up to 2x (bench: OpenVINO int8 1.4-1.8x onnxruntime
int8 with AMX or AVX-512 VNNI, 0.54x on an AVX2-only EPYC), so ``auto`` does not guess: the
first time a model's image tower runs on a CPU, each installed runtime that can open it is
timed on a batch of the worker's size (a couple of seconds each), its answer compared with the
model's own runtime's (cosine at least COSINE_FLOOR), and the fastest kept. The choice is
remembered per CPU (its model name, core count and instruction-set flags), model content
(the image tower's size, times and first and last MiB), batch size and threads, in ~/.columnist/runtimes.json, so later
starts only read it. ``COLUMNIST_RUNTIME`` (or ``--runtime``) names one instead.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from columnist.files import read_regular_file, write_atomically
from columnist.models.machine import cpu_count, cpu_signature, fingerprint
from columnist.models.sessions import RUNTIMES, open_session

if TYPE_CHECKING:
    from columnist.models.spec import ModelSpec

log = logging.getLogger("columnist.models")

COSINE_FLOOR = 0.999
"""A runtime whose embeddings differ more from the model's own runtime's is not chosen."""
SECONDS_EACH = 1.5
"""Timing per runtime (after one warm-up batch), at least two batches."""
CACHE = Path.home() / ".columnist" / "runtimes.json"


@dataclass
class Choice:
    runtime: str
    img_s: dict[str, float] = field(default_factory=dict)
    """Images per second of each runtime timed (batch of the worker's size)."""
    cosine: dict[str, float] = field(default_factory=dict)
    """Each runtime's lowest cosine to the model's own runtime's embeddings."""
    measured_at: str = ""
    cached: bool = False

    def describe(self) -> str:
        rates = ", ".join(f"{name} {rate:.1f} img/s (cosine {self.cosine.get(name, 1.0):.5f})"
                          for name, rate in sorted(self.img_s.items(), key=lambda item: -item[1]))
        return f"{self.runtime}: measured on this CPU {self.measured_at} ({rates})"


def candidates(spec: "ModelSpec", tower: Path) -> list[str]:
    """The model's own runtime first, then every other installed one that opens its file."""
    import importlib.util

    found = [spec.runtime]
    if tower.suffix == ".onnx" and importlib.util.find_spec("openvino") is not None:
        found.append("openvino")
    if tower.suffix == ".onnx" and importlib.util.find_spec("onnxruntime") is not None:
        found.append("onnxruntime")
    return [name for name in dict.fromkeys(found) if name in RUNTIMES]


def _key(tower: Path, batch_size: int, threads: int) -> str:
    """A choice holds for one CPU, one model file, batch size and thread count."""
    return f"{cpu_signature()} | {fingerprint(tower)} | batch {batch_size} | threads {threads or cpu_count()}"


def choose(directory: Path, spec: "ModelSpec", threads: int = 0, batch_size: int = 32,
           measure: Callable[..., Choice] | None = None, cache: Path | None = None) -> Choice:
    """The remembered choice for this CPU and model, else one measured now (and remembered)."""
    cache = cache or CACHE
    tower = directory / spec.visual
    key = _key(tower, batch_size, threads)
    remembered = _choice(_read(cache).get(key))
    if remembered and remembered.runtime in candidates(spec, tower):
        return remembered
    choice = (measure or measure_runtimes)(tower, spec, candidates(spec, tower), threads, batch_size)
    _write(cache, key, choice)
    log.info("runtime auto for %s: %s (remembered in %s; COLUMNIST_RUNTIME names one instead)", spec.name,
             choice.describe(), cache)
    return choice


def measure_runtimes(tower: Path, spec: "ModelSpec", names: list[str], threads: int, batch_size: int) -> Choice:
    """Time each runtime on the same random batch; the fastest whose embeddings agree with the
    first one's (the model's own runtime)."""
    import numpy as np

    from columnist.vectors import l2_normalise

    pixels = np.random.default_rng(0).standard_normal((batch_size, 3, spec.image_size, spec.image_size),
                                                      dtype=np.float32)
    choice = Choice(names[0], measured_at=time.strftime("%Y-%m-%d %H:%M"))
    reference = None
    for name in names:
        try:
            session = open_session(name, tower, threads)
            feed = {session.get_inputs()[0].name: pixels}
            first = session.run(None, feed)[0]  # the warm-up batch (and the answer compared)
            runs, started = 0, time.perf_counter()
            while runs < 2 or time.perf_counter() - started < SECONDS_EACH:
                session.run(None, feed)
                runs += 1
            rate = runs * batch_size / (time.perf_counter() - started)
        except Exception as err:  # noqa: BLE001 - a runtime that cannot run this model is not a choice
            log.info("runtime %s cannot run %s here: %s", name, spec.name, err)
            continue
        embeddings = l2_normalise(np.asarray(first, dtype=np.float32).reshape(batch_size, -1))
        reference = embeddings if reference is None else reference
        cosine = float((embeddings * reference).sum(axis=1).min())
        choice.img_s[name], choice.cosine[name] = round(rate, 2), round(cosine, 6)
    agreeing = {name: rate for name, rate in choice.img_s.items() if choice.cosine[name] >= COSINE_FLOOR}
    if agreeing:
        choice.runtime = max(agreeing, key=agreeing.get)
    return choice


def remembered(directory: Path, spec: "ModelSpec", batch_size: int = 32, threads: int = 0,
               cache: Path | None = None) -> Choice | None:
    """The choice remembered for this CPU and model, if one was measured (`model info`)."""
    return _choice(_read(cache or CACHE).get(_key(directory / spec.visual, batch_size, threads)))


MAX_CACHE_BYTES = 1 << 20


def _read(cache: Path) -> dict:
    """The remembered choices; a file that is not one (another program's, a newer columnist's,
    a FIFO, garbage) is as good as none: the model is measured again."""
    try:
        data = json.loads(read_regular_file(cache, MAX_CACHE_BYTES))
    except (OSError, ValueError, RecursionError):  # FileRefused (a FIFO, too large) is an OSError
        return {}
    return data if isinstance(data, dict) else {}


def _choice(found: object) -> Choice | None:
    """A remembered entry as a Choice, or None when it is not one this version reads."""
    try:
        rates = {str(k): float(v) for k, v in found.get("img_s", {}).items()}
        cosines = {str(k): float(v) for k, v in found.get("cosine", {}).items()}
        choice = Choice(found["runtime"], rates, cosines, str(found.get("measured_at", ""))[:40], cached=True)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    numbers = [*rates.values(), *cosines.values()]
    if not isinstance(choice.runtime, str) or choice.runtime not in RUNTIMES \
            or not all(math.isfinite(n) for n in numbers) or len(numbers) > 20:
        return None
    return choice


def _write(cache: Path, key: str, choice: Choice) -> None:
    """Atomically (two workers starting at once each write a whole file)."""
    data = _read(cache)
    data[key] = {k: v for k, v in asdict(choice).items() if k != "cached"}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, json.dumps(data, indent=1))
    except OSError as err:  # a read-only home: measured again next time, said once here
        log.warning("could not remember the runtime choice in %s: %s", cache, err)
