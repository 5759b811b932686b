"""Dynamic int8 towers: weights of MatMul and Gemm quantised, activations at run time.

Only MatMul/Gemm: quantising the patch-embedding convolution cost a quarter of the image
tower's time here, and quantising every op type (Add, Mul, Softmax...) wrecked the output
(cosine 0.88 to fp32). u8 activations x s8 weights use the VNNI kernels.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from columnist.models.spec import ModelSpec


def quantize_model_dir(source: Path, out: Path) -> ModelSpec:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, out = Path(source), Path(out)
    spec = ModelSpec.read(source)
    if spec.dtype != "fp32":
        raise ValueError(f"{source}: model is already {spec.dtype}; quantize an fp32 export")
    out.mkdir(parents=True, exist_ok=True)
    for tower in (spec.visual, spec.textual):
        quantize_dynamic(source / tower, out / tower, op_types_to_quantize=["MatMul", "Gemm"],
                         weight_type=QuantType.QInt8)
    shutil.copy(source / spec.tokenizer, out / spec.tokenizer)
    quantized = spec.model_copy(update={"name": f"{spec.name}-int8", "dtype": "int8"})
    quantized.write(out)
    return quantized
