"""Export a CLIP model to a columnist model directory (needs the ``[export]`` extra).

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
    import torch
    from torch.export import Dim

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    spec = ModelSpec(name=name, embedding_dim=config.projection_dim, image_size=config.vision_config.image_size,
                     logit_scale=float(model.logit_scale.exp().item()),
                     context_length=config.text_config.max_position_embeddings, opset=opset, source=source)
    visual, textual = _towers(model)
    batch = Dim("batch", min=1, max=1024)
    pixels = torch.zeros(2, 3, spec.image_size, spec.image_size)
    tokens = torch.full((2, spec.context_length), config.text_config.eos_token_id, dtype=torch.int64)
    with torch.no_grad():
        for tower, example, file, input_name, output_name in (
            (visual, pixels, spec.visual, "pixel_values", "image_embeds"),
            (textual, tokens, spec.textual, "input_ids", "text_embeds"),
        ):
            program = torch.onnx.export(tower, (example,), dynamo=True, opset_version=opset,
                                        input_names=[input_name], output_names=[output_name],
                                        dynamic_shapes={input_name: {0: batch}}, optimize=True)
            program.save(str(out / file), external_data=False)
            strip_source_locations(out / file)
    tokenizer.save(str(out / spec.tokenizer), pretty=False)
    spec.write(out)
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
