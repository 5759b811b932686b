"""onnxruntime and other runtimes' sessions, kept apart from the models that use them.

CPU only; intra-op threads default to one per core; full graph optimisation (about 1.4x
faster than none on this kind of machine). That optimisation takes most of a session's
opening (1.3 s of 1.6 s for the fp32 ViT-B/32 image tower here, which tag and every worker
start wait for), so the optimised graph of a large model is kept per CPU and model file in
OPTIMISED_CACHE and opened as it is next time (0.3-0.5 s; the same outputs, bit for bit).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable, Sequence

from columnist.errors import ConfigurationError
from columnist.models.machine import LARGE_MODEL_BYTES, cpu_count, cpu_flags, fingerprint
from columnist.printable import printable

log = logging.getLogger("columnist.models")


def onnxruntime_session(path: Path, threads: int = 0, providers: Sequence[str] = ("CPUExecutionProvider",),
                        provider_options: Sequence[dict] | None = None) -> Any:
    """An onnxruntime session (the default runtime). ``providers`` and their options go
    straight to onnxruntime, e.g. ``["OpenVINOExecutionProvider"]`` where it is installed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: ONNX model file not found")
    cached = optimised_copy(Path(path)) if list(providers) == ["CPUExecutionProvider"] else None
    if cached is None:
        return ort.InferenceSession(str(path), options, providers=list(providers), provider_options=provider_options)
    refused = cached.with_suffix(".refused").exists()  # before this opening: a first failure is made again
    if cached.is_file():
        session = _open_copy(ort, cached, options, providers)
        if session is not None:
            return session
    if refused:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    return _open_and_keep_optimised(ort, path, options, providers, cached)


def _open_copy(ort: Any, cached: Path, options: Any, providers: Sequence[str]) -> Any:
    """A session over the kept copy, or None when it cannot be opened: damaged, it is made
    again; a copy made again that cannot be opened either (a graph this onnxruntime writes
    but cannot read back) leaves a ``.refused`` mark, and no more copies are kept of it."""
    refused = cached.with_suffix(".refused")
    try:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimised already
        session = ort.InferenceSession(str(cached), options, providers=list(providers))
    except Exception as err:  # noqa: BLE001 - the model itself is opened instead
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        again = "no more copies are kept of it" if refused.exists() else "it is made again"
        log.warning("the optimised copy %s cannot be opened, %s: %s", cached, again, printable(str(err), 200))
        with suppress(OSError):
            cached.unlink()
            refused.touch()
        return None
    with suppress(OSError):
        refused.unlink(missing_ok=True)  # what could not be opened once was damaged, not unreadable
    return session


OPTIMISED_CACHE = Path.home() / ".cache" / "columnist" / "onnxruntime"
OPTIMISED_BYTES = (LARGE_MODEL_BYTES, 1536 << 20)
"""Model files kept optimised: from LARGE_MODEL_BYTES (smaller ones open fast) to well under
protobuf's 2 GiB (a model file with external data is small and not kept either)."""


def optimised_copy(path: Path) -> Path | None:
    """Where the optimised graph of this model file is kept for this kind of CPU and this
    onnxruntime (the graph holds kernels' layouts for the CPU's vector width; its core count
    does not matter), or None if it is not kept. Named ``<file's path>-<its content>-<CPU and
    runtime>``: two CPUs or runtimes sharing a home keep a copy each."""
    import onnxruntime as ort

    size = path.stat().st_size
    if not OPTIMISED_BYTES[0] <= size <= OPTIMISED_BYTES[1]:
        return None
    where, content, machine = (hashlib.sha256(text.encode()).hexdigest()[:16] for text in (
        str(path.resolve()), fingerprint(path), f"{' '.join(sorted(cpu_flags()))}|{ort.__version__}"))
    return OPTIMISED_CACHE / f"{where}-{content}-{machine}.onnx"


PARTIAL_AGE_S = 3600
"""A partial copy this old was left by a process killed while writing it: removed."""


def _open_and_keep_optimised(ort: Any, path: Path, options: Any, providers: Sequence[str], cached: Path) -> Any:
    """The session, its optimised graph written beside the copies of other models (copies of
    an older version of this file, and partial copies a killed process left, are removed); a
    cache that cannot be written only costs time."""
    partial = cached.with_name(f"{cached.stem}.{os.getpid()}.partial")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = str(partial)
        session = ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception:  # noqa: BLE001 - not writable, full: opened without keeping a copy
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        options.optimized_model_filepath = ""
        return ort.InferenceSession(str(path), options, providers=list(providers))
    try:
        os.replace(partial, cached)
        _remove_stale_copies(cached)
    except OSError as err:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        log.info("could not keep the optimised graph of %s in %s: %s", path, cached.parent, err)
    return session


def _remove_stale_copies(cached: Path) -> None:
    where, content, _ = cached.stem.split("-")
    for other in cached.parent.glob(f"{where}-*"):
        with suppress(OSError, IndexError):  # gone meanwhile, or a name this code did not write
            stale = other.suffix in (".onnx", ".refused") and other.stem.split("-")[1] != content
            killed = other.suffix == ".partial" and time.time() - other.stat().st_mtime > PARTIAL_AGE_S
            if stale or killed:
                other.unlink()


def _openvino(precision: str | None) -> Callable[..., Any]:
    def open_with_openvino(path: Path, threads: int = 0) -> Any:
        from columnist.models.openvino_runtime import openvino_session

        return openvino_session(path, threads, precision)
    return open_with_openvino


RUNTIMES: dict[str, Callable[..., Any]] = {
    "onnxruntime": onnxruntime_session,
    "openvino": _openvino(None),  # bf16 where the CPU has bf16 units, else its default
    "openvino-f32": _openvino("f32"),
}
"""Runtimes by the name a model.json gives (``runtime``). Each opens a session over an ONNX
file with ``(path, threads)`` and returns something with ``get_inputs()`` and
``run(None, feeds)``; a new runtime is one function (or module) and one entry here."""


FAST_UNITS = ("amx_bf16", "amx_int8", "avx512_bf16")
"""CPU flags of bf16 units: OpenVINO runs fp32 models in bf16 on them (its default precision)."""


AUTO_MIN_BYTES = LARGE_MODEL_BYTES
"""Smaller image towers are not measured under ``auto``: they run on the model's own runtime
(OpenVINO's compile time outweighs its speed on them, and the tiny test model stays on the
reference runtime)."""


def worth_measuring(image_tower: Path) -> bool:
    """Whether ``auto`` times the runtimes for this tower (models.runtime_choice)."""
    return image_tower.is_file() and image_tower.stat().st_size >= AUTO_MIN_BYTES


def resolve_runtime(requested: str, model_runtime: str) -> str:
    """``auto`` without a measurement: the runtime the model directory names."""
    return model_runtime if requested == "auto" else requested


class ModelUnreadable(ConfigurationError, ValueError):
    """A model file its runtime cannot open: truncated, not ONNX, an operator it lacks."""


def open_session(runtime: str, path: Path, threads: int = 0) -> Any:
    try:
        factory = RUNTIMES[runtime]
    except KeyError:
        raise ValueError(f"unknown runtime {runtime!r} for {path}: known runtimes are {', '.join(RUNTIMES)}") from None
    try:
        return factory(path, threads)
    except (FileNotFoundError, ModuleNotFoundError):  # each says what is missing already
        raise
    except Exception as err:  # the runtime's own error types (onnxruntime's InvalidProtobuf, Fail, ...)
        raise ModelUnreadable(f"{printable(str(path))}: {runtime} cannot open this model file: "
                              f"{printable(str(err), 300)}") from err
