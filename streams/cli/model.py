"""``columnist model ...``: inspect, export, quantize and run models."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import utf8_text

model_app = typer.Typer(help="Inspect, export, quantize and run CLIP models.", no_args_is_help=True)


@model_app.command("info")
def info(name: str = typer.Argument(..., help="'mock', a built-in model or a model directory.")) -> None:
    """Print a model's description and files."""
    from columnist.models.registry import resolve_model_dir
    from columnist.models.spec import ModelSpec

    if name == "mock":
        typer.echo("mock: deterministic hash encoder, 512-d, logit_scale 100, no files")
        return
    directory = resolve_model_dir(name)
    spec = ModelSpec.read(directory)
    typer.echo(f"{spec.name} ({directory})")
    typer.echo(f"  {'scoring':15} {spec.scoring}")
    for key, value in spec.model_dump(exclude={"provenance"}).items():
        origin = spec.provenance.get(key)
        typer.echo(f"  {key:15} {value}" + (f"   <- {origin}" if origin else ""))
    for file in sorted(directory.iterdir()):
        typer.echo(f"  file {file.name:20} {file.stat().st_size / 1e6:8.2f} MB")
    from columnist.cli.common import settings
    from columnist.models.runtime_choice import remembered
    from columnist.models.sessions import worth_measuring

    config = settings()
    if worth_measuring(directory / spec.visual):
        choice = remembered(directory, spec, config.batch_size, config.threads)
        typer.echo(f"  runtime auto on this CPU: {choice.describe() if choice else 'not measured yet (the first run measures it)'}")
    else:
        typer.echo(f"  runtime auto: {spec.runtime} (a small image tower: not measured)")


@model_app.command("check")
def check(name: str = typer.Argument(..., help="A built-in model, a pulled one's repository id, or a model directory.")) -> None:
    """Run both towers on two inputs each, alone and together: sizes, finite rows, and rows
    that do not depend on their batch-mates (what `model pull` checks before it writes)."""
    from columnist.models.layouts import check as check_towers
    from columnist.models.registry import resolve_model_dir
    from columnist.models.spec import ModelSpec

    directory = resolve_model_dir(name)
    spec = ModelSpec.read(directory)
    check_towers(directory, spec)
    typer.echo(f"{spec.name}: both towers answer one finite {spec.embedding_dim}-d row per input, whatever the batch")


@model_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="Directory to write the model into."),
    source: Optional[str] = typer.Option(None, "--from", help="A Hugging Face id or directory with a CLIPModel."),
    random: Optional[str] = typer.Option(None, "--random", help="A random model of this shape: vit-b-32, tiny, "
                                                               "siglip-b-16, siglip-tiny or siglip2-tiny."),
    seed: int = typer.Option(0, help="Seed of the random weights."),
    name: Optional[str] = typer.Option(None, help="Model name stored with embeddings (default from the source)."),
) -> None:
    """Export a CLIP or SigLIP model to ONNX towers (needs the export extra: pip install -e '.\\[export]')."""
    import importlib.util

    from columnist.cli.common import fail
    from columnist.cli.errors import CONFIGURATION, UNAVAILABLE

    if (source is None) == (random is None):
        raise typer.BadParameter("give exactly one of --from or --random")
    missing = [m for m in ("torch", "transformers", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"model export needs {', '.join(missing)}: pip install -e '.[export]' (a large download; "
             "only exporting needs it)", CONFIGURATION)
    from columnist.models import export as exporter
    from columnist.models.tokenizer import build_clip_tokenizer

    siglip = random in exporter.SIGLIP_SHAPES or random and random.startswith("siglip2-")
    if random and siglip:
        family = "siglip2" if random.startswith("siglip2-") else "siglip"
        model = exporter.random_siglip(random.replace("siglip2-", "siglip-"), seed)
        tokenizer = exporter.random_sentencepiece(family)
    elif random:
        model = exporter.random_clip(random, seed)
        tokenizer = build_clip_tokenizer(exporter.bundled_bpe_path())
    else:
        try:
            siglip = _model_type(source) == "siglip"
            if siglip:
                model, tokenizer, family = exporter.pretrained_siglip(source)
            else:
                model, tokenizer = exporter.pretrained_clip(source)
        except OSError as err:  # no network, an unknown id, a folder without a model
            fail(f"cannot load {source!r}: {' '.join(str(err).split())[:200]}\nwithout internet here, download the "
                 f"model where there is (huggingface-cli download {source} --local-dir DIR), copy DIR over and pass "
                 "--from DIR, or get a ready-made ONNX model: columnist model pull REPO_ID", UNAVAILABLE)
    name, origin = (name or f"random-{random}-seed{seed}", f"random {random} seed {seed}") if random else (
        name or Path(source).name, source)
    if siglip:
        spec = exporter.export_siglip(model, tokenizer, out, name, origin, family)
    else:
        spec = exporter.export_clip(model, tokenizer, out, name, origin)
    typer.echo(f"wrote {spec.name} to {out}")


def _model_type(source: str) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source).model_type


@model_app.command("quantize")
def quantize(
    source: Path = typer.Argument(..., help="An fp32 model directory."),
    out: Path = typer.Option(..., "--out", help="Directory for the int8 model."),
    runtime: str = typer.Option("onnxruntime", help="onnxruntime (dynamic int8, portable) or openvino (NNCF "
                                "static int8 of the image tower, calibrated on images: the fastest on Intel CPUs)."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="A folder of your own images to calibrate "
                                             "with (openvino; default: the sample photos)."),
) -> None:
    """Write int8 towers beside a copy of the tokenizer."""
    from columnist.models.registry import resolve_model_dir
    from columnist.cli.common import fail
    from columnist.cli.errors import CONFIGURATION

    if runtime == "onnxruntime":
        from columnist.models.quantize import quantize_model_dir

        spec = quantize_model_dir(resolve_model_dir(str(source)), out)
    elif runtime == "openvino":
        import importlib.util

        from columnist.models.openvino_runtime import quantize_for_openvino
        from columnist.tagger import find_images

        if importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino") is None:
            fail("quantizing for OpenVINO needs openvino and nncf: pip install -e '.[openvino]'", CONFIGURATION)
        folder = calibrate or Path(__file__).resolve().parents[2] / "tests" / "data" / "photos"
        images = [path for _, path in find_images([folder])] if folder.exists() else []
        if not images:
            fail(f"no calibration images in {folder}: pass --calibrate DIR", CONFIGURATION)
        spec = quantize_for_openvino(resolve_model_dir(str(source)), out, images)
    else:
        fail(f"--runtime must be onnxruntime or openvino, not {runtime!r}", 2)
    typer.echo(f"wrote {spec.name} to {out}")


@model_app.command("embed")
def embed(
    out: Path = typer.Option(..., "--out", help="The .npy file to write."),
    model: Optional[str] = typer.Option(None, "--model", help="'mock', a built-in model or a directory."),
    image: List[Path] = typer.Option([], "--image", help="An image file (repeatable)."),
    text: List[str] = typer.Option([], "--text", help="A text (repeatable).", callback=utf8_text),
) -> None:
    """Write L2-normalised embeddings, one row per input in order, to a .npy file."""
    import numpy as np

    from columnist.models.images import ImageError, open_image
    from columnist.models.registry import load_encoder
    from columnist.settings import get_settings

    if bool(image) == bool(text):
        raise typer.BadParameter("give --image files or --text strings (not both)")
    settings = get_settings()
    encoder = load_encoder(model or settings.model, runtime=settings.runtime)
    if image:
        try:
            images = [open_image(path.read_bytes(), str(path)) for path in image]
        except (ImageError, OSError) as err:
            typer.echo(f"cannot embed: {err}", err=True)
            raise typer.Exit(1)
        vectors = encoder.encode_images(images)
    else:
        vectors = encoder.encode_texts(text)
    np.save(out, vectors)
    typer.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings from {encoder.name} to {out}")


@model_app.command("pull")
def pull(
    repo_id: str = typer.Argument(..., help="A Hugging Face repository, e.g. immich-app/ViT-B-32__openai or "
                                            "Xenova/clip-vit-base-patch32."),
    out: Optional[Path] = typer.Option(None, "--out", help="Model directory to write (default "
                                                          "~/.columnist/models/OWNER--NAME)."),
    revision: Optional[str] = typer.Option(None, help="A branch, tag or commit of the repository."),
    variant: str = typer.Option("fp32", help="fp32, or int8 (transformers.js's quantized towers)."),
    name: Optional[str] = typer.Option(None, help="Model name stored with embeddings (default: the repository id "
                                                  "and its revision, e.g. OWNER/NAME@1a2b3c4d5e)."),
    logit_scale: Optional[float] = typer.Option(None, help="The model's trained logit scale, where the "
                                                          "repository does not carry it (CLIP: 100)."),
    logit_bias: Optional[float] = typer.Option(None, help="SigLIP's trained logit bias: scores become "
                                                         "sigmoid(scale x cos + bias), probabilities as they come."),
    source: Optional[Path] = typer.Option(None, "--from-folder", help="Convert a folder already on disk "
                                                                       "(a copied snapshot) instead of downloading."),
) -> None:
    """Get a ready-made ONNX CLIP or SigLIP (Immich's or transformers.js's layouts) without
    torch; offline, set HF_HUB_OFFLINE=1 to read the Hugging Face cache only."""
    from columnist.models.pull import pull as pull_model

    if source is None:
        typer.echo(f"fetching {repo_id} ({variant}) with huggingface_hub ...", err=True)
    spec, target = pull_model(repo_id, out, revision, variant, name, logit_scale, logit_bias, snapshot=source)
    typer.echo(f"wrote {spec.name} to {target}: {spec.embedding_dim}-d, {spec.image_size} px, {spec.scoring}")
    for key in ("logit_scale", "logit_bias"):
        if "not in the repository" in spec.provenance.get(key, ""):
            typer.echo(f"note: {key} {spec.provenance[key]}", err=True)
    typer.echo(f"use it with --model {target} (or COLUMNIST_MODEL={target})")


@model_app.command("list")
def list_models() -> None:
    """Local models: built-in ones, pulled ones (~/.columnist/models) and .columnist/models."""
    from columnist.models.registry import local_models

    rows = local_models()
    if not rows:
        typer.echo("no local models")
        return
    header = ("name", "runtime", "precision", "dim", "scoring", "source", "directory")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def register(app: typer.Typer) -> None:
    from columnist.cli import migration

    migration.register(model_app)
    app.add_typer(model_app, name="model")
