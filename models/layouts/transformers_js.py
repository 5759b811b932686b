"""transformers.js's layout (``Xenova/clip-vit-base-patch32``, ``Xenova/siglip-base-patch16-224``):
``config.json`` (a transformers config), ``preprocessor_config.json``, ``tokenizer.json``,
``tokenizer_config.json`` and ``onnx/vision_model[_quantized].onnx`` /
``onnx/text_model[_quantized].onnx`` (CLIP: ``image_embeds`` / ``text_embeds``; SigLIP:
``pooler_output``)."""

from __future__ import annotations

from pathlib import Path

from columnist.models.layouts.files import CLIP_LOGIT_SCALE, LayoutError, integer, read_json, side, token
from columnist.models.spec import ModelSpec

NAME = "transformers.js"
EXPECTS = "transformers.js's onnx/vision_model.onnx + onnx/text_model.onnx + preprocessor_config.json"


def recognises(folder: Path) -> bool:
    return (folder / "onnx").is_dir() and (folder / "preprocessor_config.json").is_file()


VARIANTS = {"fp32": "", "int8": "_quantized"}
"""transformers.js file suffixes columnist can run (fp16 and 4-bit towers take other inputs)."""


def read(folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]:
    if variant not in VARIANTS:
        raise LayoutError(f"{source}: variant {variant!r} is not one columnist runs; choose {' or '.join(VARIANTS)}")
    config = read_json(folder / "config.json")
    preprocess = read_json(folder / "preprocessor_config.json")
    tokenizer_config = read_json(folder / "tokenizer_config.json")
    kind = config.get("model_type", "")
    if kind not in ("clip", "siglip"):
        raise LayoutError(f"{folder / 'config.json'}: model_type {kind!r}; columnist runs 'clip' and 'siglip'")
    suffix = VARIANTS[variant]
    visual, textual = f"onnx/vision_model{suffix}.onnx", f"onnx/text_model{suffix}.onnx"
    for tower in (visual, textual):
        if not (folder / tower).is_file():
            raise LayoutError(f"{folder}: {tower} is missing (the {variant} variant of this repository)")
    crop = preprocess.get("do_center_crop", False)
    size = side(preprocess.get("crop_size") if crop else preprocess.get("size"))
    siglip = kind == "siglip"
    dim = config.get("projection_dim", 512) if not siglip else config.get("text_config", {}).get("hidden_size", 768)
    max_length = tokenizer_config.get("model_max_length", 64 if siglip else 77)
    max_length = int(min(max_length, 512)) if isinstance(max_length, (int, float)) and not isinstance(max_length, bool) \
        else integer(max_length, "tokenizer_config.json model_max_length")
    spec = ModelSpec(
        name=source + ("-int8" if variant == "int8" else ""),
        embedding_dim=integer(dim, "config.json " + ("text_config.hidden_size" if siglip else "projection_dim")),
        image_size=size,
        mean=tuple(preprocess.get("image_mean")), std=tuple(preprocess.get("image_std")),
        resize="shortest" if crop else "squash",
        interpolation="bilinear" if preprocess.get("resample") == 2 else "bicubic",
        context_length=min(max_length, 64 if siglip else 77),
        dtype="int8" if variant == "int8" else "fp32",
        logit_scale=CLIP_LOGIT_SCALE, source=f"{source} (transformers.js layout, {variant})",
        visual=visual, textual=textual, tokenizer="tokenizer.json",
        visual_output="pooler_output" if siglip else "image_embeds",
        textual_output="pooler_output" if siglip else "text_embeds",
        pad_token=token(tokenizer_config.get("pad_token")),
        canonicalize=siglip and bool(tokenizer_config.get("do_lower_case")),
        provenance={
            "embedding_dim": "config.json " + ("text_config.hidden_size" if siglip else "projection_dim"),
            "image_size": "preprocessor_config.json " + ("crop_size" if crop else "size"),
            "mean": "preprocessor_config.json image_mean", "std": "preprocessor_config.json image_std",
            "resize": "preprocessor_config.json do_center_crop",
            "context_length": "tokenizer_config.json model_max_length",
            "pad_token": "tokenizer_config.json pad_token", "family": kind,
        },
    )
    files = [visual, textual, "tokenizer.json", "config.json", "preprocessor_config.json", "tokenizer_config.json"]
    files += [p.relative_to(folder).as_posix() for tower in (visual, textual)
              for p in sorted((folder / "onnx").glob(Path(tower).name + "_data*"))]  # external weights
    return spec, files
