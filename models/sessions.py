"""onnxruntime and other runtimes' sessions, kept apart from the models that use them.

CPU only; intra-op threads default to one per core; full graph optimisation (about 1.4x
faster than none on this kind of machine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from columnist.errors import ConfigurationError
from columnist.printable import printable


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
"""CPU flags of bf16 units: OpenVINO runs fp32 models in bf16 on them (its default precision)."""


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


AUTO_MIN_BYTES = 32 * 1024 * 1024
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
