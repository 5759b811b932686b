"""What this CPU is and which model file this is, cheaply: the keys of what columnist
remembers per machine (the runtime ``auto`` chose, onnxruntime's optimised graphs)."""

from __future__ import annotations

import hashlib
import os
from functools import cache, lru_cache
from pathlib import Path


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.split(":", 1)[-1].split())


@cache
def cpu_name() -> str:
    try:
        return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "")
    except OSError:  # pragma: no cover - not Linux
        return ""


LARGE_MODEL_BYTES = 32 << 20
"""A model file from this size is worth what columnist remembers per user about it (the
runtime ``auto`` measured, onnxruntime's optimised graph, its prompts): a smaller one opens
and encodes at once, and the tiny test model keeps the tests' counts exact."""

MATRIX_UNITS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The flags that decide which runtime and precision wins here (what a benchmark reports)."""


def cpu_signature() -> str:
    """What makes one CPU run a model at another speed than the next: its name, cores, flags."""
    flags = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:12]
    return f"{cpu_name()} x{cpu_count()} flags:{flags}"


def fingerprint(path: Path) -> str:
    """What tells this model file from another, cheaply: its size, its modification and
    change times and the sha256 of its first and last MiB. Hashing a 350 MB fp32 tower at
    every start cost half a second. Any write to the file moves its change time, which no
    tool sets back (a build that fixes modification times does not fix it), so a file
    written again, copied or downloaded again is measured again: a few seconds, once. The
    runtime choice, the optimised graph and the prompts each ask: the ends are read once
    while the file's times and size stay the same."""
    info = path.stat()
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:" + \
        _ends_digest(str(path), info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@lru_cache(maxsize=64)
def _ends_digest(path: str, size: int, mtime_ns: int, ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:32]
