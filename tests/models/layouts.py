"""Local copies of the ready-made layouts columnist pulls, built from tiny-clip's towers.

Same file names, configs, tensor names, integer types and fixed shapes as the published
repositories (immich-app/*, Xenova/*); the weights are tiny-clip's random ones, so what the
converted model computes can be checked against tiny-clip itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from columnist.models.registry import resolve_model_dir

TINY = resolve_model_dir("tiny-clip")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CLIP_TOKENIZER_CONFIG = {"bos_token": "<|startoftext|>", "do_lower_case": True, "eos_token": "<|endoftext|>",
                         "model_max_length": 77, "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
                         "unk_token": "<|endoftext|>"}
WORDS = "a photo of the moon an astronaut on spacewalk cup coffee cat earth rocket über café".split()


def tower(source: Path, input_name: str, outputs: list[str], int32: bool = False, batch_one: bool = False,
          length: int | None = None, mask: bool = False) -> onnx.ModelProto:
    """tiny-clip's tower with the published tensor names: ``outputs`` names the embedding
    last; a 'last_hidden_state' before it is a (batch, 1, d) tensor, as SigLIP's towers give
    first. ``length``: ids of this length, padded to tiny-clip's 77 inside the graph."""
    model = onnx.load(str(source))
    graph = model.graph
    for name in [input_name, *outputs, "attention_mask"]:
        _rename(graph, name, f"{name}__tiny")  # tiny-clip's own tensors may carry the published names
    old_in, old_out = graph.input[0], graph.output[0]
    dims = [d.dim_value or d.dim_param for d in old_in.type.tensor_type.shape.dim]
    if batch_one:
        dims[0] = 1
    if length:
        dims[1] = length
    kind = TensorProto.INT32 if int32 else old_in.type.tensor_type.elem_type
    new_in = helper.make_tensor_value_info(input_name, kind, dims)
    nodes, current = [], input_name
    if int32:
        nodes.append(helper.make_node("Cast", [current], ["ids64"], to=TensorProto.INT64))
        current = "ids64"
    if length:
        nodes.append(helper.make_node("Constant", [], ["pads"], value=helper.make_tensor(
            "p", TensorProto.INT64, [4], [0, 0, 0, 77 - length])))
        nodes.append(helper.make_node("Pad", [current, "pads"], ["padded"]))
        current = "padded"
    nodes.append(helper.make_node("Identity", [current], [old_in.name]))
    out_dims = [d.dim_value or d.dim_param for d in old_out.type.tensor_type.shape.dim]
    new_outputs, tail = [], []
    for name in outputs:
        if name == "last_hidden_state":
            tail.append(helper.make_node("Constant", [], ["axes"], value=helper.make_tensor(
                "a", TensorProto.INT64, [1], [1])))
            tail.append(helper.make_node("Unsqueeze", [old_out.name, "axes"], [name]))
            new_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [out_dims[0], 1, out_dims[1]]))
        else:
            tail.append(helper.make_node("Identity", [old_out.name], [name]))
            new_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, out_dims))
    inputs = [new_in]
    if mask:
        inputs.append(helper.make_tensor_value_info("attention_mask", kind, dims))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph.node.extend(tail)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend(new_outputs)
    onnx.checker.check_model(model)
    return model


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        if value.name == old:
            value.name = new


def word_tokenizer(path: Path, end: str = "</s>", pad: str = "</s>", specials: tuple[str, ...] = ()) -> None:
    """A small sentencepiece-like tokenizer.json (SigLIP's append an end token, pad with it);
    ``specials`` are matched before words (NLLB's language codes)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {token: i for i, token in enumerate(dict.fromkeys(["<pad>", end, pad, "<unk>", *WORDS]))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {end}", special_tokens=[(end, vocab[end])])
    tokenizer.add_special_tokens(list(specials))
    tokenizer.save(str(path))


def _write(path: Path, content: dict | str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))


def immich_clip(root: Path, name: str = "ViT-B-32__openai") -> Path:
    """immich-app/ViT-B-32__openai: fixed batch of one, int32 text, ARM NN and RKNN files beside."""
    folder = root / name
    _write(folder / "config.json", {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768,
           "patch_size": 32}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                                          "layers": 12}})
    _write(folder / "README.md", "---\ntags: [immich, clip]\n---\n")
    (folder / "visual").mkdir(parents=True)
    onnx.save(tower(TINY / "visual.onnx", "image", ["embedding"], batch_one=True), str(folder / "visual" / "model.onnx"))
    _write(folder / "visual" / "preprocess_cfg.json", {"size": [224, 224], "mode": "RGB", "mean": CLIP_MEAN, "std": CLIP_STD,
           "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0})
    (folder / "textual").mkdir()
    onnx.save(tower(TINY / "textual.onnx", "text", ["embedding"], int32=True, batch_one=True),
              str(folder / "textual" / "model.onnx"))
    shutil.copy(TINY / "tokenizer.json", folder / "textual" / "tokenizer.json")
    _write(folder / "textual" / "tokenizer_config.json", CLIP_TOKENIZER_CONFIG)
    _write(folder / "textual" / "special_tokens_map.json", {"pad_token": "<|endoftext|>"})
    for junk in ("visual/model.armnn", "visual/fp16/model.armnn", "visual/rknpu/rk3588/model.rknn", "textual/model.armnn"):
        _write(folder / junk, b"not for onnxruntime")
    return folder


def immich_siglip(root: Path, name: str = "ViT-B-16-SigLIP__webli") -> Path:
    """A SigLIP as Immich publishes it: squash resize, mean/std 0.5, 64 int32 ids padded with </s>."""
    folder = root / name
    (folder / "visual").mkdir(parents=True)
    (folder / "textual").mkdir()
    _write(folder / "config.json", {"embed_dim": 512, "init_logit_bias": -10, "custom_text": True, "vision_cfg": {
           "image_size": 224, "timm_model_name": "vit_base_patch16_siglip_224", "timm_model_pretrained": False,
           "timm_pool": "map", "timm_proj": "none"}, "text_cfg": {"context_length": 64, "vocab_size": 32000,
           "hf_tokenizer_name": "timm/ViT-B-16-SigLIP", "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 768,
           "heads": 12, "layers": 12, "no_causal_mask": True, "proj_bias": True, "pool_type": "last"}})
    onnx.save(tower(TINY / "visual.onnx", "image", ["embedding"], batch_one=True), str(folder / "visual" / "model.onnx"))
    _write(folder / "visual" / "preprocess_cfg.json", {"size": [224, 224], "mode": "RGB", "mean": [0.5] * 3,
           "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash", "fill_color": 0})
    onnx.save(tower(TINY / "textual.onnx", "text", ["embedding"], int32=True, batch_one=True, length=64),
              str(folder / "textual" / "model.onnx"))
    word_tokenizer(folder / "textual" / "tokenizer.json")
    _write(folder / "textual" / "tokenizer_config.json", {"eos_token": "</s>", "model_max_length": 64,
           "pad_token": "</s>", "tokenizer_class": "SiglipTokenizer", "unk_token": "<unk>"})
    return folder


def immich_mclip(root: Path, name: str = "XLM-Roberta-Large-Vit-B-32") -> Path:
    """M-CLIP: the text tower takes input_ids and attention_mask, its weights in a file beside it."""
    folder = immich_clip(root, name)
    text = tower(TINY / "textual.onnx", "input_ids", ["embedding"], int32=True, batch_one=True, mask=True)
    onnx.save(text, str(folder / "textual" / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="c1f385d0-4888-11ef-a23b-00155d655292", size_threshold=1024)
    word_tokenizer(folder / "textual" / "tokenizer.json", end="</s>", pad="<pad>")
    _write(folder / "textual" / "tokenizer_config.json", {"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 512,
           "pad_token": "<pad>", "tokenizer_class": "XLMRobertaTokenizer", "unk_token": "<unk>"})
    return folder


def transformers_js_clip(root: Path, name: str = "clip-vit-base-patch32") -> Path:
    folder = root / name
    (folder / "onnx").mkdir(parents=True)
    _write(folder / "config.json", {"_name_or_path": "openai/clip-vit-base-patch32", "architectures": ["CLIPModel"],
           "logit_scale_init_value": 2.6592, "model_type": "clip", "projection_dim": 512,
           "text_config": {"model_type": "clip_text_model"}, "vision_config": {"model_type": "clip_vision_model"}})
    _write(folder / "preprocessor_config.json", {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
           "do_normalize": True, "do_resize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "resample": 3,
           "size": {"shortest_edge": 224}})
    shutil.copy(TINY / "tokenizer.json", folder / "tokenizer.json")
    _write(folder / "tokenizer_config.json", {**CLIP_TOKENIZER_CONFIG, "pad_token": {"__type": "AddedToken",
                                                                                    "content": "<|endoftext|>"}})
    vision = tower(TINY / "visual.onnx", "pixel_values", ["image_embeds"])
    text = tower(TINY / "textual.onnx", "input_ids", ["text_embeds"])
    for suffix in ("", "_quantized"):
        onnx.save(vision, str(folder / "onnx" / f"vision_model{suffix}.onnx"))
        onnx.save(text, str(folder / "onnx" / f"text_model{suffix}.onnx"))
    _write(folder / "onnx" / "vision_model_fp16.onnx", b"fp16: not fetched, not used")
    return folder


def transformers_js_siglip(root: Path, name: str = "siglip-base-patch16-224") -> Path:
    """SigLIP towers give last_hidden_state first; the embedding is pooler_output."""
    folder = root / name
    (folder / "onnx").mkdir(parents=True)
    _write(folder / "config.json", {"architectures": ["SiglipModel"], "model_type": "siglip",
           "text_config": {"hidden_size": 512, "model_type": "siglip_text_model", "vocab_size": 32000},
           "vision_config": {"model_type": "siglip_vision_model", "patch_size": 16}})
    _write(folder / "preprocessor_config.json", {"do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3, "size": {"height": 224, "width": 224}})
    word_tokenizer(folder / "tokenizer.json")
    _write(folder / "tokenizer_config.json", {"do_lower_case": True, "eos_token": "</s>", "model_max_length": 64,
           "pad_token": "</s>", "tokenizer_class": "SiglipTokenizer", "unk_token": "<unk>"})
    onnx.save(tower(TINY / "visual.onnx", "pixel_values", ["last_hidden_state", "pooler_output"]),
              str(folder / "onnx" / "vision_model.onnx"))
    onnx.save(tower(TINY / "textual.onnx", "input_ids", ["last_hidden_state", "pooler_output"], length=64),
              str(folder / "onnx" / "text_model.onnx"))
    return folder


def immich_nllb(root: Path, name: str = "nllb-clip-base-siglip__v1") -> Path:
    """NLLB-SigLIP: no context_length in config.json (77, as Immich), a language code read first."""
    folder = immich_siglip(root, name)
    config = json.loads((folder / "config.json").read_text())
    config["text_cfg"] = {"hf_model_name": "facebook/nllb-200-distilled-600M",
                          "hf_tokenizer_name": "facebook/nllb-200-distilled-600M", "hf_proj_type": "linear",
                          "hf_pooler_type": "cls_pooler"}
    _write(folder / "config.json", config)
    onnx.save(tower(TINY / "textual.onnx", "text", ["embedding"], int32=True, batch_one=True),
              str(folder / "textual" / "model.onnx"))
    word_tokenizer(folder / "textual" / "tokenizer.json", pad="<pad>", specials=("eng_Latn", "deu_Latn", "fra_Latn"))
    _write(folder / "textual" / "tokenizer_config.json", {"eos_token": "</s>", "pad_token": "<pad>",
           "tokenizer_class": "NllbTokenizer", "src_lang": "eng_Latn"})
    return folder
