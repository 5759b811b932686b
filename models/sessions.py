"""onnxruntime and other runtimes' sessions, kept apart from the models that use them.

CPU only; intra-op threads default to one per core; full graph optimisation (about 1.4x
faster than none on this kind of machine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
    return ort.InferenceSession(str(path), options, providers=list(providers), provider_options=provider_options)


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
"""CPU flags of bf16 units: where OpenVINO's bf16 kernels run an fp32 ONNX model about 2x
faster than onnxruntime fp32 (cosine to fp32 >= 0.9999; `make bench-model`)."""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


AUTO_MIN_BYTES = 32 * 1024 * 1024
"""Smaller image towers stay on onnxruntime under ``auto``: OpenVINO's compile time outweighs
its speed on them (and the tiny test model stays on the reference runtime)."""


def resolve_runtime(requested: str, model_runtime: str, dtype: str, image_tower: Path | None = None) -> str:
    """``auto``: what the model directory names, except a large fp32 ONNX model, which runs
    on OpenVINO where the [openvino] extra is installed and the CPU has bf16 units. int8
    models keep their runtime (each runtime's int8 file is quantized for it)."""
    import importlib.util

    if requested != "auto":
        return requested
    large = image_tower is not None and image_tower.is_file() and image_tower.stat().st_size >= AUTO_MIN_BYTES
    if (model_runtime == "onnxruntime" and dtype == "fp32" and large and cpu_flags() & set(FAST_UNITS)
            and importlib.util.find_spec("openvino") is not None):
        return "openvino"
    return model_runtime


def open_session(runtime: str, path: Path, threads: int = 0) -> Any:
    try:
        factory = RUNTIMES[runtime]
    except KeyError:
        raise ValueError(f"unknown runtime {runtime!r} for {path}: known runtimes are {', '.join(RUNTIMES)}") from None
    return factory(path, threads)
