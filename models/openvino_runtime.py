"""OpenVINO as a runtime for the towers, behind the same session interface as onnxruntime.

It reads our ONNX files directly (and OpenVINO IR, ``.xml``, which `columnist model
quantize --runtime openvino` writes). On Intel CPUs with AMX or AVX-512 it is the fast path:
its bf16 and int8 kernels use them (FIELD-NOTES: bf16 ~4x and NNCF int8 ~7x onnxruntime fp32
on the ViT-B/32 image tower here). ``openvino`` runs at the CPU's default precision (bf16
where the CPU has it); ``openvino-f32`` forces f32, for exact parity. Compiled models are
cached next to the model files' cache folder, so a restart does not compile again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class _Input:
    name: str
    shape: tuple = ()
    type: str = ""


def _describe(port: Any) -> _Input:
    """A port as onnxruntime describes one: name, shape (None where dynamic), element type."""
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    kinds = {"i32": "tensor(int32)", "i64": "tensor(int64)", "f32": "tensor(float)"}
    kind = port.get_element_type().get_type_name()
    return _Input(port.get_any_name(), shape, kinds.get(kind, kind))


class OpenVINOSession:
    """What the towers ask of a session: ``get_inputs()`` and ``run(None, feeds)``."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def get_inputs(self) -> list[_Input]:
        return [_describe(i) for i in self.compiled.inputs]

    def get_outputs(self) -> list[_Input]:
        return [_describe(o) for o in self.compiled.outputs]

    def run(self, outputs: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]:
        result = self.request.infer(feeds)
        return [result[output].copy() for output in self.compiled.outputs]


def openvino_session(path: Path, threads: int = 0, precision: str | None = None) -> OpenVINOSession:
    try:
        import openvino as ov
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"{path} asks for the OpenVINO runtime: pip install -e '.[openvino]'") from None
    from columnist.models.machine import cpu_count

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    config = {"INFERENCE_NUM_THREADS": threads or cpu_count(),
              "ENABLE_CPU_PINNING": False}  # pinning makes two workers on one machine share a core
    if precision is None:
        # OpenVINO picks bf16 by itself only on AMX CPUs; with AVX-512 bf16 units it is still
        # faster, also for the float parts of an int8 model (1.5x onnxruntime int8 instead of
        # 1.3x on an AMD EPYC here), at a cosine to fp32 >= 0.9997
        from columnist.models.machine import cpu_flags
        from columnist.models.sessions import FAST_UNITS

        precision = "bf16" if cpu_flags() & set(FAST_UNITS) else None
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(compiled_cache(precision))})
    return OpenVINOSession(core.compile_model(core.read_model(str(path)), "CPU", config))


def compiled_cache(precision: str | None) -> Path:
    """Where compiled models are kept, a folder per precision: OpenVINO's cache key leaves the
    precision out (2026.4, on a Xeon with AMX: a model compiled in f32 and then in bf16 by one
    process shared one file, and the bf16 model answered NaN, then and at every later start)."""
    cache = Path.home() / ".cache" / "columnist" / "openvino" / (precision or "default")
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def quantize_for_openvino(source: Path, out: Path, calibration: Sequence[Path], subset: int = 64) -> "Any":
    """int8 image tower with NNCF post-training quantization (transformer preset) on
    ``calibration`` images; the text tower is kept as it is. Writes an OpenVINO model dir."""
    import shutil

    import nncf
    import numpy as np
    import openvino as ov

    from columnist.models.clip import ClipEncoder
    from columnist.models.images import open_image
    from columnist.models.spec import ModelSpec

    source, out = Path(source), Path(out)
    spec = ModelSpec.read(source)
    if spec.dtype != "fp32":
        raise ValueError(f"{source}: model is already {spec.dtype}; quantize an fp32 export")
    encoder = ClipEncoder(source, spec)
    pixels = [encoder.prepare_image(open_image(p.read_bytes(), str(p)))[None] for p in calibration]
    if not pixels:
        raise ValueError("no calibration images")
    name = ov.Core().read_model(str(source / spec.visual)).inputs[0].get_any_name()
    dataset = nncf.Dataset(pixels, lambda batch: {name: batch.astype(np.float32)})
    quantized = nncf.quantize(ov.Core().read_model(str(source / spec.visual)), dataset,
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=min(subset, len(pixels)))
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out / "visual.xml"))
    for file in (spec.textual, spec.tokenizer):
        shutil.copy(source / file, out / file)
    result = spec.model_copy(update={"name": f"{spec.name}-openvino-int8", "dtype": "int8", "runtime": "openvino",
                                     "visual": "visual.xml"})
    result.write(out)
    return result
