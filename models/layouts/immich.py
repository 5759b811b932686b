"""Immich's layout (``immich-app/ViT-B-32__openai``, ``…SigLIP…``, ``XLM-Roberta-Large-Vit-B-32``, …):
``config.json`` (open_clip's model config), ``visual/model.onnx`` (input ``image``, output
``embedding``, batch fixed at 1), ``visual/preprocess_cfg.json``, ``textual/model.onnx`` (int32
``text``, or ``input_ids`` + ``attention_mask`` for M-CLIP), ``textual/tokenizer.json`` and
``tokenizer_config.json``. Weights of large towers sit in files beside ``model.onnx``; files of
other runtimes (ARM NN, Rockchip, fp16) are left out."""

from __future__ import annotations

import json
from pathlib import Path

from columnist.models.layouts.files import CLIP_LOGIT_SCALE, LayoutError, integer, interpolation, read_json, resize_mode, token
from columnist.models.spec import CLIP_MEAN, CLIP_STD, ModelSpec

NAME = "immich"
EXPECTS = "Immich's visual/model.onnx + textual/model.onnx + config.json"
SKIPPED = (".armnn", ".rknn")
"""Files of other runtimes in Immich's folders (ARM NN, Rockchip NPU)."""


def recognises(folder: Path) -> bool:
    return (folder / "visual" / "model.onnx").is_file() and (folder / "textual" / "model.onnx").is_file()


def read(folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]:
    if variant != "fp32":
        raise LayoutError(f"{source}: Immich publishes fp32 ONNX towers only (asked for {variant!r}); "
                          "quantize after pulling: columnist model quantize")
    config = read_json(folder / "config.json")
    preprocess = read_json(folder / "visual" / "preprocess_cfg.json")
    tokenizer_config = read_json(folder / "textual" / "tokenizer_config.json")
    text = config.get("text_cfg", {})
    size = preprocess.get("size", 224)
    siglip = "siglip" in json.dumps(config).lower()
    nllb = "nllb" in str(text.get("hf_tokenizer_name", "")).lower()
    provenance = {
        "embedding_dim": "config.json embed_dim",
        "image_size": "visual/preprocess_cfg.json size",
        "mean": "visual/preprocess_cfg.json mean", "std": "visual/preprocess_cfg.json std",
        "resize": "visual/preprocess_cfg.json resize_mode" if "resize_mode" in preprocess
        else "default 'shortest' (preprocess_cfg.json has no resize_mode)",
        "context_length": "config.json text_cfg.context_length" if "context_length" in text
        else "default 77 (config.json has none; Immich uses 77)",
        "pad_token": "textual/tokenizer_config.json pad_token",
    }
    spec = ModelSpec(
        name=source, embedding_dim=integer(config["embed_dim"], "config.json embed_dim"),
        image_size=integer(size[0] if isinstance(size, list) else size, "visual/preprocess_cfg.json size"),
        mean=tuple(preprocess.get("mean", CLIP_MEAN)),
        std=tuple(preprocess.get("std", CLIP_STD)),
        resize=resize_mode(preprocess.get("resize_mode", "shortest"), folder),
        interpolation=interpolation(preprocess.get("interpolation", "bicubic"), folder),
        context_length=integer(text.get("context_length", 77), "config.json text_cfg.context_length"),
        logit_scale=CLIP_LOGIT_SCALE, source=f"{source} (Immich layout)",
        visual="visual/model.onnx", textual="textual/model.onnx", tokenizer="textual/tokenizer.json",
        pad_token=token(tokenizer_config.get("pad_token")),
        canonicalize=(text.get("tokenizer_kwargs") or {}).get("clean") == "canonicalize",
        text_prefix="eng_Latn" if nllb else "",
        provenance={**provenance, "family": "siglip" if siglip else "clip",
                    **({"text_prefix": "NLLB reads a language code first; English, as Immich does"} if nllb else {})},
    )
    files = [p.relative_to(folder).as_posix() for tower in ("visual", "textual")
             for p in sorted((folder / tower).rglob("*")) if _wanted(p, folder / tower)]
    return spec, files


def _wanted(path: Path, tower: Path) -> bool:
    """Everything of an ONNX tower (its model, external weight files, configs), nothing of
    other runtimes (``*.armnn``, ``*.rknn``, the ``rknpu/`` and ``fp16/`` folders)."""
    parts = path.relative_to(tower).parts
    return not path.is_dir() and path.suffix not in SKIPPED and parts[0] not in ("rknpu", "fp16")  # a FIFO is refused later
