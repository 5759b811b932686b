"""``model.json``: what a model directory holds and how to feed it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    embedding_dim: int
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    logit_scale: float = 100.0
    context_length: int = 77
    opset: int = 18
    dtype: Literal["fp32", "int8"] = "fp32"
    runtime: str = "onnxruntime"
    """Which runtime opens the towers (models.sessions.RUNTIMES)."""
    source: str = ""
    """Where the weights came from (a Hugging Face id, 'random vit-b-32 seed 0', ...)."""
    visual: str = "visual.onnx"
    textual: str = "textual.onnx"
    tokenizer: str = "tokenizer.json"

    @classmethod
    def read(cls, directory: Path) -> "ModelSpec":
        path = Path(directory) / "model.json"
        try:
            return cls.model_validate_json(path.read_text())
        except OSError as err:
            raise FileNotFoundError(f"{path}: cannot read model description: {err.strerror}") from None

    def write(self, directory: Path) -> None:
        (Path(directory) / "model.json").write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
