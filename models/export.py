"""Export a CLIP or SigLIP model to a columnist model directory (needs the ``[export]`` extra).

Each tower is wrapped as ``projection(tower(...).pooler_output)`` and exported with the
dynamo exporter (opset 18, one file per tower, dynamic batch axis). The text tower takes
the full 77-token context: columnist always pads to it. Random models of a named shape
stand in where no pretrained weights can be downloaded: ``vit-b-32`` is exactly
openai/clip-vit-base-patch32's shape (for speed), ``tiny`` is small enough to commit (for
tests and the demo); both are seeded, so an export is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from columnist.models.spec import ModelSpec

RANDOM_SHAPES: dict[str, dict] = {
    # transformers.CLIPConfig() defaults are the openai/clip-vit-base-patch32 shape
    "vit-b-32": {},
    "tiny": {
        "projection_dim": 512,
        "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                        "num_attention_heads": 2},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 2, "image_size": 224, "patch_size": 32},
    },
}


def bundled_bpe_path() -> Path:
    """CLIP's BPE merges file as shipped in open-clip-torch's wheel."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.origin:
        raise ModuleNotFoundError("open-clip-torch is needed for CLIP's BPE vocabulary: pip install -e '.[export]'")
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


def random_clip(shape: str, seed: int = 0) -> Any:
    import torch
    from transformers import CLIPConfig, CLIPModel

    if shape not in RANDOM_SHAPES:
        raise ValueError(f"unknown random shape {shape!r}: choose from {', '.join(RANDOM_SHAPES)}")
    torch.manual_seed(seed)
    config = CLIPConfig(**RANDOM_SHAPES[shape])
    return CLIPModel._from_config(config, attn_implementation="eager").eval()


def pretrained_clip(source: str) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(source, attn_implementation="eager").eval()
    return model, CLIPTokenizer.from_pretrained(source).backend_tokenizer


def _towers(model: Any) -> tuple[Any, Any]:
    import torch

    class Visual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model

        def forward(self, pixel_values):
            return self.clip.visual_projection(self.clip.vision_model(pixel_values=pixel_values).pooler_output)

    class Textual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model

        def forward(self, input_ids):
            return self.clip.text_projection(self.clip.text_model(input_ids=input_ids).pooler_output)

    return Visual().eval(), Textual().eval()


def export_clip(model: Any, tokenizer: Any, out: Path, name: str, source: str, opset: int = 18) -> ModelSpec:
    """Write visual.onnx, textual.onnx, tokenizer.json and model.json into ``out``."""
    config = model.config
    spec = ModelSpec(name=name, embedding_dim=config.projection_dim, image_size=config.vision_config.image_size,
                     logit_scale=float(model.logit_scale.exp().item()),
                     context_length=config.text_config.max_position_embeddings, opset=opset, source=source,
                     provenance={"embedding_dim": "CLIPConfig projection_dim",
                                 "image_size": "CLIPConfig vision_config.image_size",
                                 "mean": "CLIP's image processor", "std": "CLIP's image processor",
                                 "logit_scale": "model weights (exp logit_scale)",
                                 "context_length": "CLIPConfig text_config.max_position_embeddings",
                                 "family": "clip"})
    _export(*_towers(model), tokenizer, spec, Path(out), config.text_config.eos_token_id)
    return spec


def _export(visual: Any, textual: Any, tokenizer: Any, spec: ModelSpec, out: Path, fill_id: int) -> None:
    """Both towers to ONNX (dynamic batch), the tokenizer and model.json into ``out``."""
    import torch
    from torch.export import Dim

    out.mkdir(parents=True, exist_ok=True)
    batch = Dim("batch", min=1, max=1024)
    pixels = torch.zeros(2, 3, spec.image_size, spec.image_size)
    tokens = torch.full((2, spec.context_length), fill_id, dtype=torch.int64)
    outputs = (spec.visual_output or "image_embeds", spec.textual_output or "text_embeds")
    with torch.no_grad():
        for tower, example, file, input_name, output_name in (
            (visual, pixels, spec.visual, "pixel_values", outputs[0]),
            (textual, tokens, spec.textual, "input_ids", outputs[1]),
        ):
            program = torch.onnx.export(tower, (example,), dynamo=True, opset_version=spec.opset,
                                        input_names=[input_name], output_names=[output_name],
                                        dynamic_shapes={input_name: {0: batch}}, optimize=True)
            program.save(str(out / file), external_data=False)
            strip_source_locations(out / file)
    tokenizer.save(str(out / spec.tokenizer), pretty=False)
    spec.write(out)


# -- SigLIP -------------------------------------------------------------------------------

SIGLIP_SHAPES: dict[str, dict] = {
    # transformers.SiglipConfig() defaults are google/siglip-base-patch16-224's shape
    "siglip-b-16": {},
    "siglip-tiny": {
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                        "projection_size": 32},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "image_size": 224, "patch_size": 32},
    },
}
SIGLIP_TOKENS = {
    # (pad, end, unk, ids first): SigLIP pads with its end token; SigLIP2's Gemma tokenizer has a pad token
    "siglip": ("</s>", "</s>", "<unk>", ["<pad>", "</s>", "<unk>"]),
    "siglip2": ("<pad>", "<eos>", "<unk>", ["<pad>", "<eos>", "<bos>", "<unk>"]),
}


def random_siglip(shape: str, seed: int = 0, vocab_size: int = 32000) -> Any:
    """A seeded random SiglipModel; its logit scale and bias set to SigLIP-like values
    (trained models have about exp 4.7 = 117 and -12.9), which random init leaves at 0."""
    import math

    import torch
    from transformers import SiglipConfig, SiglipModel

    if shape not in SIGLIP_SHAPES:
        raise ValueError(f"unknown random shape {shape!r}: choose from {', '.join(SIGLIP_SHAPES)}")
    torch.manual_seed(seed)
    shape_config = {key: dict(value) for key, value in SIGLIP_SHAPES[shape].items()}
    shape_config.setdefault("text_config", {})["vocab_size"] = vocab_size
    model = SiglipModel._from_config(SiglipConfig(**shape_config), attn_implementation="eager").eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-2.5)
    return model


def random_sentencepiece(family: str = "siglip") -> Any:
    """A sentencepiece-style (Unigram, '▁' word marks) tokenizer.json with SigLIP's special
    tokens, for random exports: the real ones come with a pretrained model (``--from``)."""
    import string

    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    pad, end, unk, first = SIGLIP_TOKENS[family]
    words = ("a photo of the moon earth astronaut spacewalk rocket launch galaxy cat coffee space station window "
             "porthole crew mission control planet star night city lights cloud").split()
    pieces = [(token, 0.0) for token in first] + [("▁", -3.0)] + [(f"▁{w}", -2.0) for w in words]
    pieces += [(c, -6.0) for c in string.ascii_lowercase + string.digits + string.punctuation + "àâçéèêëîïôûüßñåø"]
    tokenizer = Tokenizer(Unigram(pieces, unk_id=first.index(unk)))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {end}", special_tokens=[(end, first.index(end))])
    return tokenizer


def pretrained_siglip(source: str) -> tuple[Any, Any, str]:
    """A SigLIP or fixed-resolution SigLIP2 checkpoint (both are SiglipModel in transformers)."""
    from transformers import AutoConfig, AutoTokenizer, SiglipModel

    kind = AutoConfig.from_pretrained(source).model_type
    if kind != "siglip":
        raise ValueError(f"{source}: model_type {kind!r}; columnist exports SiglipModel checkpoints (SigLIP, and "
                         "SigLIP2 at a fixed resolution); NaFlex SigLIP2 (variable resolution) is not supported")
    model = SiglipModel.from_pretrained(source, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    family = "siglip2" if "gemma" in type(tokenizer).__name__.lower() else "siglip"
    return model, fast_tokenizer(tokenizer), family


def fast_tokenizer(tokenizer: Any) -> Any:
    """The ``tokenizers.Tokenizer`` that tokenizes as ``tokenizer`` does. A checkpoint in the
    form Google publishes SigLIP (a sentencepiece ``spiece.model``, no ``tokenizer.json``)
    loads as transformers' slow SiglipTokenizer, which has none and which transformers has no
    converter for: it is converted here (``siglip_tokenizer``); other slow ones by transformers."""
    if hasattr(tokenizer, "backend_tokenizer"):
        return tokenizer.backend_tokenizer
    if type(tokenizer).__name__ == "SiglipTokenizer":
        return siglip_tokenizer(tokenizer)
    from transformers.convert_slow_tokenizer import convert_slow_tokenizer

    return convert_slow_tokenizer(tokenizer)


def siglip_tokenizer(slow: Any) -> Any:
    """SiglipTokenizer (sentencepiece) as a ``tokenizers.Tokenizer``: its canonical text (big_vision's
    ``canonicalize_text``: lower case, ASCII punctuation removed, whitespace collapsed, trailing
    space stripped, one word mark in front), then sentencepiece's own normalization (the
    model's precompiled character map), the unigram pieces split at word marks, and the end
    token appended. Its special tokens are the slow tokenizer's (a piece such as <pad> that
    it does not treat as special stays text)."""
    import json
    import re
    import string

    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import SpmConverter

    class SiglipConverter(SpmConverter):
        handle_byte_fallback = True

        def normalizer(self, proto):
            steps = [normalizers.Replace("▁", " ")]
            if getattr(self.original_tokenizer, "do_lower_case", True):
                steps.append(normalizers.Lowercase())
            steps += [normalizers.Replace(Regex("[" + re.escape(string.punctuation) + "]"), ""),
                      normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(left=False, right=True),
                      normalizers.Prepend("▁")]
            if proto.normalizer_spec.precompiled_charsmap:
                steps.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
            steps.append(normalizers.Replace(Regex(" {2,}"), " "))
            return normalizers.Sequence(steps)

        def pre_tokenizer(self, replacement, add_prefix_space):
            return pre_tokenizers.Metaspace(replacement=replacement, prepend_scheme="never", split=True)

        def post_processor(self):
            end = self.original_tokenizer.eos_token
            return processors.TemplateProcessing(single=["$A", end], pair=["$A", end, "$B", end],
                                                 special_tokens=[(end, self.original_tokenizer.convert_tokens_to_ids(end))])

    converted = json.loads(SiglipConverter(slow).converted().to_str())
    converted["added_tokens"] = [{"id": slow.convert_tokens_to_ids(token), "content": token, "single_word": False,
                                  "lstrip": True, "rstrip": True, "normalized": False, "special": True}
                                 for token in slow.all_special_tokens]  # as SiglipTokenizer declares them
    return Tokenizer.from_str(json.dumps(converted))


def export_siglip(model: Any, tokenizer: Any, out: Path, name: str, source: str, family: str = "siglip",
                  opset: int = 18) -> ModelSpec:
    """SigLIP towers (pooled outputs), its squash preprocessing, 64 ids padded with its pad
    token, and its learned logit scale and bias: scores are sigmoid(scale x cos + bias)."""
    import torch

    class Visual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.siglip = model

        def forward(self, pixel_values):
            return self.siglip.vision_model(pixel_values=pixel_values).pooler_output

    class Textual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.siglip = model

        def forward(self, input_ids):
            return self.siglip.text_model(input_ids=input_ids).pooler_output

    config = model.config
    pad = SIGLIP_TOKENS[family][0]
    spec = ModelSpec(name=name, embedding_dim=config.vision_config.hidden_size, image_size=config.vision_config.image_size,
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="squash",
                     logit_scale=float(model.logit_scale.exp().item()), logit_bias=float(model.logit_bias.item()),
                     context_length=config.text_config.max_position_embeddings, opset=opset, source=source,
                     pad_token=pad, visual_output="pooled", textual_output="pooled",
                     provenance={"embedding_dim": "SiglipConfig vision_config.hidden_size",
                                 "image_size": "SiglipConfig vision_config.image_size",
                                 "mean": "SigLIP's image processor", "std": "SigLIP's image processor",
                                 "logit_scale": "model weights (exp logit_scale)", "logit_bias": "model weights",
                                 "context_length": "SiglipConfig text_config.max_position_embeddings",
                                 "pad_token": f"{family}'s tokenizer", "family": family,
                                 "resize": "SigLIP's processor: resize to the square, no crop"})
    _export(Visual().eval(), Textual().eval(), tokenizer, spec, Path(out), tokenizer.token_to_id(pad))
    return spec


def strip_source_locations(path: Path) -> None:
    """Drop the exporter's per-node metadata (stack traces with the exporting machine's
    absolute paths, Python module names, FX node dumps): it changes nothing the runtime does
    and made the committed files depend on the folder they were exported from."""
    import onnx

    model = onnx.load(str(path))

    def strip(nodes) -> None:
        for node in nodes:
            del node.metadata_props[:]
            node.doc_string = ""
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    strip(attribute.g.node)
                for graph in attribute.graphs:
                    strip(graph.node)

    strip(model.graph.node)
    for function in model.functions:
        strip(function.node)
    onnx.save(model, str(path))
