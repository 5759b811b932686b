"""``model.json``: what a model directory holds and how to feed it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from columnist.errors import ConfigurationError
from columnist.printable import printable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelSpecError(ConfigurationError, ValueError):
    """A model.json that does not describe a model columnist can run."""


class ModelSpec(BaseModel):
    """Bounded like any input: a model directory may come from anywhere (``model pull``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    embedding_dim: int = Field(ge=1, le=16384)
    image_size: int = Field(224, ge=16, le=1024)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    logit_scale: float = Field(100.0, gt=0, le=1000)
    context_length: int = Field(77, ge=1, le=512)
    opset: int = 18
    dtype: Literal["fp32", "int8"] = "fp32"
    runtime: str = "onnxruntime"
    """Which runtime opens the towers (models.sessions.RUNTIMES)."""
    source: str = ""
    """Where the weights came from (a Hugging Face id, 'random vit-b-32 seed 0', ...)."""
    visual: str = "visual.onnx"
    textual: str = "textual.onnx"
    tokenizer: str = "tokenizer.json"
    # -- what ready-made layouts differ in (defaults: a columnist CLIP export) --
    logit_bias: Optional[float] = None
    """SigLIP's learned bias: with it, score = sigmoid(logit_scale x cos + logit_bias) is a
    probability by construction, and an attribute's default calibration comes from the model."""
    resize: Literal["shortest", "squash"] = "shortest"
    """'shortest': resize the short side, centre-crop (CLIP); 'squash': resize to the square (SigLIP)."""
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    visual_output: Optional[str] = None
    """Output of the image tower holding the embedding (None: the first; SigLIP towers of
    transformers.js give last_hidden_state first and the embedding as pooler_output)."""
    textual_output: Optional[str] = None
    pad_token: Optional[str] = None
    """Token texts are padded with (None: CLIP's end token)."""
    canonicalize: bool = False
    """Lower-case and strip punctuation before tokenizing (open_clip's SigLIP 'canonicalize')."""
    text_prefix: str = ""
    """Glued before every text (NLLB text towers read a language code first: 'eng_Latn')."""
    provenance: dict[str, str] = {}
    """Where each number came from (a config file, a default, the command line)."""

    @field_validator("mean", "std")
    @classmethod
    def _levels(cls, values: tuple[float, float, float], info) -> tuple[float, float, float]:
        low = 1e-3 if info.field_name == "std" else -10.0
        if not all(low <= v <= 10.0 for v in values):
            raise ValueError(f"{info.field_name} {values} is out of range ({low} to 10 per channel)")
        return values

    @field_validator("visual", "textual", "tokenizer")
    @classmethod
    def _inside_the_folder(cls, name: str, info) -> str:
        """A file of the model folder: not an absolute path, not up and out of it."""
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts or "\0" in name:
            raise ValueError(f"{info.field_name} {name[:200]!r} is not a file inside the model folder")
        return name

    @field_validator("name")
    @classmethod
    def _not_the_mock(cls, name: str) -> str:
        if name == "mock":  # the built-in hash encoder's: two encoders must never share a key in a store
            raise ValueError("'mock' is a built-in model's name (the test encoder): name the model otherwise")
        if any(not c.isprintable() for c in name):  # it is printed in logs, messages and pages
            raise ValueError("the name holds a control character")
        return name

    @property
    def scoring(self) -> str:
        return "native sigmoid" if self.logit_bias is not None else "calibrated sigmoid"

    @classmethod
    def read(cls, directory: Path) -> "ModelSpec":
        from columnist.files import read_regular_file

        path = Path(directory) / "model.json"
        try:
            return cls.model_validate_json(read_regular_file(path, 1_000_000))
        except ValidationError as err:
            raise ModelSpecError(f"{printable(path)}: not a model description columnist can use: "
                                 f"{printable(' '.join(str(err).split()), 400)}") from None
        except OSError as err:
            raise FileNotFoundError(f"{printable(path)}: cannot read model description: {err.strerror or err}") from None

    def write(self, directory: Path) -> None:
        """model.json; the layout fields are written only where they are not their defaults
        (a CLIP export's file has only its provenance beyond the fields it always had)."""
        document = self.model_dump(mode="json")
        for key in LAYOUT_FIELDS:
            if document[key] == ModelSpec.model_fields[key].default:
                del document[key]
        (Path(directory) / "model.json").write_text(json.dumps(document, indent=2) + "\n")


LAYOUT_FIELDS = ("logit_bias", "resize", "interpolation", "visual_output", "textual_output", "pad_token",
                 "canonicalize", "text_prefix", "provenance")
