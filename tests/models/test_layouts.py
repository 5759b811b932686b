"""Ready-made layouts (Immich, transformers.js) -> columnist models, without network or torch.

The layouts are built locally from tiny-clip's towers (tests/models/layouts.py) with the
published file names, configs and tensor names, so what a converted model computes is
checked against tiny-clip run directly on the same preprocessing and token ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from columnist.models.clip import ClipEncoder
from columnist.models.images import open_image
from columnist.models.layouts import LayoutError, convert
from columnist.models.preprocess import preprocess
from columnist.models.sessions import onnxruntime_session
from columnist.models.spec import ModelSpec
from columnist.models.target import TargetBusy, TargetRefused
from tests.conftest import PHOTOS, REPO
from tests.hostile import HOSTILE_FOLDERS
from tests.models import layouts

TEXTS = ["a photo of the moon", "An astronaut, on a SPACEWALK!", "über café", "moon " * 100]


@pytest.fixture(scope="module")
def photos():
    return [open_image(p.read_bytes(), p.name) for p in sorted(PHOTOS.glob("*.jpg"))]


def tiny_images(images, resize: str, mean, std) -> np.ndarray:
    session = onnxruntime_session(layouts.TINY / "visual.onnx")
    out = session.run(None, {"pixel_values": preprocess(images, 224, mean, std, resize)})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def tiny_texts(ids: np.ndarray) -> np.ndarray:
    """tiny-clip's text tower on ``ids``, padded with zeros to its 77 as the fixture graphs do."""
    session = onnxruntime_session(layouts.TINY / "textual.onnx")
    padded = np.zeros((len(ids), 77), np.int64)
    padded[:, :ids.shape[1]] = ids
    out = session.run(None, {"input_ids": padded})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_immich_clip_computes_what_tiny_clip_does_and_leaves_other_runtimes_files(tmp_path, photos):
    folder = layouts.immich_clip(tmp_path / "src")
    spec = convert(folder, tmp_path / "model", "immich-app/ViT-B-32__openai")
    assert ModelSpec.read(tmp_path / "model") == spec
    assert (spec.embedding_dim, spec.context_length, spec.pad_token) == (512, 77, "<|endoftext|>")
    assert spec.name.startswith("immich-app/ViT-B-32__openai@sha256-")  # the weights' own mark: see below
    assert spec.provenance["embedding_dim"] == "config.json embed_dim" and spec.scoring == "calibrated sigmoid"
    copied = {p.relative_to(tmp_path / "model").as_posix() for p in (tmp_path / "model").rglob("*") if p.is_file()}
    assert not any(name.endswith((".armnn", ".rknn")) for name in copied) and "visual/model.onnx" in copied

    encoder = ClipEncoder.from_directory(tmp_path / "model")
    assert encoder.image_tower.batch_size == 1 and encoder.text_tower.dtype == "int32"  # as Immich exports them
    reference = ClipEncoder.from_directory(layouts.TINY)
    np.testing.assert_allclose(encoder.encode_images(photos), reference.encode_images(photos), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), reference.encode_texts(TEXTS), atol=1e-5)


def test_immich_siglip_squashes_pads_with_its_end_token_and_scores_with_the_given_bias(tmp_path, photos):
    folder = layouts.immich_siglip(tmp_path / "src")
    spec = convert(folder, tmp_path / "model", "immich-app/ViT-B-16-SigLIP__webli", logit_scale=117.3, logit_bias=-12.9)
    assert (spec.resize, spec.mean, spec.context_length, spec.pad_token, spec.canonicalize) == (
        "squash", (0.5, 0.5, 0.5), 64, "</s>", True)
    assert spec.provenance["logit_bias"] == "given (--logit-bias)" and spec.scoring == "native sigmoid"

    encoder = ClipEncoder.from_directory(tmp_path / "model")
    np.testing.assert_allclose(encoder.encode_images(photos), tiny_images(photos, "squash", [0.5] * 3, [0.5] * 3),
                               atol=1e-5)
    ids = encoder.text_tower.tokenizer(TEXTS)
    assert ids.shape == (4, 64)
    end = encoder.text_tower.tokenizer._tokenizer.token_to_id("</s>")
    assert ids[0, 5] == end and (ids[0, 5:] == end).all()  # "a photo of the moon" + </s>, padded with </s>
    assert (ids[1] == encoder.text_tower.tokenizer(["an astronaut on a spacewalk"])[0]).all()  # canonicalised
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), tiny_texts(ids), atol=1e-5)
    calibration = encoder.calibration
    assert (calibration.centre, calibration.scale) == (12.9, 1.0) and "logit bias -12.9" in calibration.source


def test_immich_siglip_without_a_bias_says_where_to_give_one(tmp_path):
    spec = convert(layouts.immich_siglip(tmp_path / "src"), tmp_path / "model", "immich-app/ViT-B-16-SigLIP__webli")
    assert spec.logit_bias is None and spec.scoring == "calibrated sigmoid"
    assert "--logit-bias" in spec.provenance["logit_bias"]


def test_immich_nllb_reads_english_first_and_pads_to_77(tmp_path):
    spec = convert(layouts.immich_nllb(tmp_path / "src"), tmp_path / "model", "immich-app/nllb-clip-base-siglip__v1")
    assert (spec.context_length, spec.text_prefix, spec.pad_token) == (77, "eng_Latn", "<pad>")
    assert spec.provenance["context_length"].startswith("default 77")
    encoder = ClipEncoder.from_directory(tmp_path / "model")
    ids = encoder.text_tower.tokenizer(["a photo of the moon"])
    assert ids[0, 0] == encoder.text_tower.tokenizer._tokenizer.token_to_id("eng_Latn")
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), tiny_texts(encoder.text_tower.tokenizer(TEXTS)), atol=1e-5)


def test_nllb_reads_each_translation_with_its_language_code(tmp_path):
    from columnist.vocab.prompts import ensemble, text_embeddings
    from columnist.vocab.schema import vocabulary_from_dict

    convert(layouts.immich_nllb(tmp_path / "src"), tmp_path / "model", "immich-app/nllb-clip-base-siglip__v1")
    encoder = ClipEncoder.from_directory(tmp_path / "model")
    tokens = encoder.text_tower.tokenizer._tokenizer
    ids, _ = encoder.text_tower.tokenizer.encode(["der Mond"], "deu_Latn")
    assert ids[0, 0] == tokens.token_to_id("deu_Latn")
    vocab = vocabulary_from_dict({"name": "m", "version": 1, "attributes": [
        {"code": "moon", "description": "the moon", "translations": {"de": "der Mond", "fra_Latn": "la lune"}}]})
    expected = ensemble(np.concatenate([encoder.encode_texts_in(["a photo of the moon"], None),
                                        encoder.encode_texts_in(["der Mond"], "de"),
                                        encoder.encode_texts_in(["la lune"], "fra_Latn")]))
    np.testing.assert_allclose(text_embeddings(encoder, vocab)["moon"], expected, atol=1e-6)
    assert not np.allclose(encoder.encode_texts_in(["der Mond"], "de"), encoder.encode_texts(["der Mond"]))
    from columnist.models.clip import flores_code

    assert [flores_code(c) for c in ("de", "zh-Hant", "zh_TW", "sr-Latn", "pt-BR", "epo_Latn", "tlh")] == [
        "deu_Latn", "zho_Hant", "zho_Hant", "srp_Latn", "por_Latn", "epo_Latn", "eng_Latn"]


def test_immich_mclip_feeds_the_attention_mask_and_copies_weights_kept_beside_the_graph(tmp_path):
    spec = convert(layouts.immich_mclip(tmp_path / "src"), tmp_path / "model", "immich-app/XLM-Roberta-Large-Vit-B-32")
    assert (tmp_path / "model" / "textual" / "c1f385d0-4888-11ef-a23b-00155d655292").is_file()
    encoder = ClipEncoder.from_directory(tmp_path / "model")
    assert encoder.text_tower.mask_name == "attention_mask"
    assert spec.pad_token == "<pad>"
    ids = encoder.text_tower.tokenizer(TEXTS)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), tiny_texts(ids), atol=1e-5)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_transformers_js_clip_variants(tmp_path, photos, variant):
    spec = convert(layouts.transformers_js_clip(tmp_path / "src"), tmp_path / "model", "Xenova/clip-vit-base-patch32",
                   variant=variant)
    suffix = "_quantized" if variant == "int8" else ""
    assert (spec.visual, spec.dtype, spec.visual_output) == (f"onnx/vision_model{suffix}.onnx", variant, "image_embeds")
    assert spec.pad_token == "<|endoftext|>"  # tokenizer_config.json writes it as an AddedToken object
    assert not (tmp_path / "model" / "onnx" / "vision_model_fp16.onnx").exists()
    reference = ClipEncoder.from_directory(layouts.TINY)
    encoder = ClipEncoder.from_directory(tmp_path / "model")
    np.testing.assert_allclose(encoder.encode_images(photos), reference.encode_images(photos), atol=1e-5)


def test_transformers_js_siglip_takes_the_pooler_output_not_the_first(tmp_path, photos):
    spec = convert(layouts.transformers_js_siglip(tmp_path / "src"), tmp_path / "model", "Xenova/siglip-base-patch16-224")
    assert (spec.visual_output, spec.resize, spec.context_length) == ("pooler_output", "squash", 64)
    encoder = ClipEncoder.from_directory(tmp_path / "model")
    assert encoder.image_tower.output == 1
    np.testing.assert_allclose(encoder.encode_images(photos), tiny_images(photos, "squash", [0.5] * 3, [0.5] * 3),
                               atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), tiny_texts(encoder.text_tower.tokenizer(TEXTS)), atol=1e-5)


def test_unknown_folders_and_disagreeing_configs_are_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="not a model layout columnist knows"):
        convert(tmp_path / "empty", tmp_path / "out", "x/y")
    folder = layouts.immich_clip(tmp_path / "src")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "embed_dim": 768}))
    with pytest.raises(LayoutError, match=r"visual/model.onnx: the image tower answers \(2, 512\) for 2 inputs of 768"):
        convert(folder, tmp_path / "out", "x/y")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    with pytest.raises(LayoutError, match="fp32 ONNX towers only"):
        convert(layouts.immich_clip(tmp_path / "again"), tmp_path / "out", "x/y", variant="int8")


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "columnist", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def _hf_cache(home, repo_id: str, snapshot_of) -> None:
    """A Hugging Face cache holding ``repo_id`` at one commit, as huggingface_hub lays it out."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot_of(repo / "snapshots" / "__tmp__")
    (repo / "snapshots" / "__tmp__" / "ViT-B-32__openai").rename(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_pull_offline_reads_the_cache_and_says_what_to_do_when_it_is_empty(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    missing = _cli("model", "pull", "immich-app/ViT-B-32__openai", env=env)
    assert missing.returncode == 4, missing.stderr
    assert "HF_HUB_OFFLINE" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) <= 3

    _hf_cache(tmp_path / "hf", "immich-app/ViT-B-32__openai", layouts.immich_clip)
    pulled = _cli("model", "pull", "immich-app/ViT-B-32__openai", env=env)
    assert pulled.returncode == 0, pulled.stderr
    target = tmp_path / "home" / ".columnist" / "models" / "immich-app--ViT-B-32__openai"
    assert ModelSpec.read(target).name == "immich-app/ViT-B-32__openai@0123456789"  # the snapshot's commit
    assert not list(target.rglob("*.armnn"))

    listed = _cli("model", "list", env=env).stdout
    assert "immich-app/ViT-B-32__openai" in listed and "calibrated sigmoid" in listed
    info = _cli("model", "info", "immich-app/ViT-B-32__openai", env=env).stdout  # found by repository id
    assert "<- config.json embed_dim" in info and "<- OpenAI CLIP's trained value" in info


def test_a_folder_that_is_not_a_model_directory_is_never_replaced(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(TargetRefused, match="a folder columnist did not write"):
        convert(layouts.immich_clip(tmp_path / "src"), photos, "immich-app/ViT-B-32__openai")
    assert (photos / "holiday.jpg").read_bytes() == b"precious"


def test_a_model_json_alone_does_not_make_a_folder_replaceable(tmp_path):
    """Any folder holding a file named model.json (even `{}`) was deleted whole, photos included."""
    album = tmp_path / "album"
    album.mkdir()
    (album / "model.json").write_text("{}")
    (album / "IMG_0001.jpg").write_bytes(b"precious")
    with pytest.raises(TargetRefused, match="no .columnist-model in it"):
        convert(layouts.immich_clip(tmp_path / "src"), album, "x/y")
    assert sorted(p.name for p in album.iterdir()) == ["IMG_0001.jpg", "model.json"]


def test_a_pulled_model_is_replaced_by_the_next_pull_and_nothing_else_is(tmp_path):
    first = convert(layouts.immich_clip(tmp_path / "src"), tmp_path / "model", "x/y", name="first")
    assert (tmp_path / "model" / ".columnist-model").is_file()
    second = convert(tmp_path / "src" / "ViT-B-32__openai", tmp_path / "model", "x/y", name="second")
    assert (first.name, second.name, ModelSpec.read(tmp_path / "model").name) == ("first", "second", "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "src"]  # no staging or old copy left


def test_the_folder_being_converted_and_its_parents_are_never_the_target(tmp_path):
    folder = layouts.immich_clip(tmp_path / "library" / "src")
    for out in (folder, tmp_path / "library", tmp_path, folder / "visual"):
        with pytest.raises(TargetRefused, match="the folder being converted"):
            convert(folder, out, "x/y")
    assert (folder / "visual" / "model.onnx").is_file()


def test_concurrent_pulls_into_one_folder_take_turns_or_say_so(tmp_path):
    """Four pulls to one --out deleted each other's staging folders: now one writes at a time
    (a lock on the folder) and the others end with a message naming it."""
    from columnist.models.target import target_lock

    folder = layouts.immich_clip(tmp_path / "src")
    with target_lock(tmp_path / "model"):  # another pull, half way
        with pytest.raises(TargetBusy, match="another `columnist model pull` is writing into"):
            convert(folder, tmp_path / "model", "x/y")
    convert(folder, tmp_path / "model", "x/y")
    assert ModelSpec.read(tmp_path / "model").name.startswith("x/y@")


def test_an_out_that_cannot_be_a_folder_is_a_short_refusal(tmp_path):
    with pytest.raises(TargetRefused, match="cannot use its folder"):
        convert(layouts.immich_clip(tmp_path / "src"), Path("/dev/null/x"), "x/y")


def _reversing(model_path):
    """The image tower with its output rows reversed: each image gets another's embedding."""
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path))
    graph = model.graph
    out = graph.output[0]
    inner = out.name + "__inner"
    for node in graph.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    graph.node.extend([
        helper.make_node("Shape", [inner], ["rows_shape"], start=0, end=1),
        helper.make_node("Constant", [], ["minus_one"], value=helper.make_tensor("m", TensorProto.INT64, [1], [-1])),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT64, [1], [0])),
        helper.make_node("Sub", ["rows_shape", "minus_one"], ["rows_plus"]),
        helper.make_node("Sub", ["zero", "rows_plus"], ["stop"]),
        helper.make_node("Slice", [inner, "minus_one", "stop", "zero", "minus_one"], [out.name]),
    ])
    onnx.save(model, str(model_path))


def _collapsing(model_path):
    """The image tower answering one row (the batch's mean) whatever the batch size."""
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path))
    graph = model.graph
    out = graph.output[0]
    inner = out.name + "__inner"
    for node in graph.node:
        node.output[:] = [inner if o == out.name else o for o in node.output]
    graph.node.extend([
        helper.make_node("Constant", [], ["batch_axis"], value=helper.make_tensor("b", TensorProto.INT64, [1], [0])),
        helper.make_node("ReduceMean", [inner, "batch_axis"], [out.name], keepdims=1)])
    onnx.save(model, str(model_path))


def _from_three(mode: str):
    """A tower that behaves in batches of one and two, and from three on adds the batch mean
    to every row ("mix") or answers zeros ("zero"): what a check of one or two images passed."""
    def edit(model_path):
        from onnx import helper, numpy_helper

        model = onnx.load(str(model_path))
        graph = model.graph
        out = graph.output[0].name
        for node in graph.node:
            node.output[:] = [out + "_raw" if o == out else o for o in node.output]
        graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                                  numpy_helper.from_array(np.array(0, np.int64), "zero_index"),
                                  numpy_helper.from_array(np.array(2, np.int64), "two"),
                                  numpy_helper.from_array(np.array(0.0, np.float32), "zero_value")])
        graph.node.extend([helper.make_node("Shape", [out + "_raw"], ["shape"]),
                           helper.make_node("Gather", ["shape", "zero_index"], ["rows"], axis=0),
                           helper.make_node("Greater", ["rows", "two"], ["three_or_more"])])
        if mode == "mix":
            graph.node.extend([helper.make_node("ReduceMean", [out + "_raw", "axis0"], ["mean"], keepdims=1),
                               helper.make_node("Add", [out + "_raw", "mean"], ["mixed"]),
                               helper.make_node("Where", ["three_or_more", "mixed", out + "_raw"], [out])])
        else:
            graph.node.extend([helper.make_node("Expand", ["zero_value", "shape"], ["zeros"]),
                               helper.make_node("Where", ["three_or_more", "zeros", out + "_raw"], [out])])
        onnx.save(model, str(model_path))
    return edit


@pytest.mark.parametrize("edit, reason", [(_reversing, "changes with the other inputs of its batch"),
                                          (_collapsing, "answers"),
                                          (_from_three("mix"), "in a batch of 3"),
                                          (_from_three("zero"), "gives zero vectors")])
def test_a_tower_whose_rows_depend_on_the_batch_is_refused(tmp_path, edit, reason):
    folder = layouts.transformers_js_clip(tmp_path / "src")
    edit(folder / "onnx" / "vision_model.onnx")
    with pytest.raises(LayoutError, match=reason):
        convert(folder, tmp_path / "out", "x/y")
    assert not (tmp_path / "out").exists()


def test_broken_configs_are_layout_errors_naming_the_folder(tmp_path):
    folder = layouts.immich_clip(tmp_path / "src")
    (folder / "config.json").write_text('{"vision_cfg": {}}')  # no embed_dim
    with pytest.raises(LayoutError, match="do not describe a model columnist can run"):
        convert(folder, tmp_path / "out", "x/y")


@pytest.mark.parametrize("repo_id", ["..", "../x", "a/../b", "owner", "owner/name/extra", "-x/y", "a--b/c"])
def test_repository_ids_that_could_name_another_folder_are_refused(repo_id, tmp_path):
    from columnist.models.pull import InvalidRepoId, default_out

    with pytest.raises(InvalidRepoId):
        default_out(repo_id)
    env = {**os.environ, "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = _cli("model", "pull", repo_id, "--from-folder", str(tmp_path), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr




@pytest.mark.parametrize("case", list(HOSTILE_FOLDERS))
def test_hostile_folders_are_refused_with_a_reason_and_nothing_is_written(tmp_path, case):
    edit, reason = HOSTILE_FOLDERS[case]
    folder = layouts.immich_clip(tmp_path / "src")
    edit(folder)
    with pytest.raises(LayoutError, match=reason):
        convert(folder, tmp_path / "out", "x/y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_built_in_models_name_is_not_taken(tmp_path):
    with pytest.raises(LayoutError, match="built-in model"):
        convert(layouts.immich_clip(tmp_path / "src"), tmp_path / "out", "x/y", name="mock")
    with pytest.raises(LayoutError, match="finite number"):
        convert(layouts.immich_clip(tmp_path / "src2"), tmp_path / "out", "x/y", logit_scale=float("nan"))


def test_a_converted_model_is_readable_by_others_and_killed_conversions_are_cleared(tmp_path):
    import stat

    (tmp_path / ".model.partial-old").mkdir()  # as a killed conversion leaves it
    (tmp_path / ".model.partial-old" / ".columnist-staging").write_text("")
    (tmp_path / ".model.partial-notes").mkdir()  # a user's own folder of that name: not ours
    (tmp_path / ".model.partial-notes" / "thesis.txt").write_text("precious")
    (tmp_path / ".other.partial-x").mkdir()
    convert(layouts.immich_clip(tmp_path / "src"), tmp_path / "model", "x/y")
    mode = stat.S_IMODE((tmp_path / "model").stat().st_mode)
    assert mode == 0o777 & ~_umask() and mode & 0o005
    assert not (tmp_path / ".model.partial-old").exists()
    assert (tmp_path / ".model.partial-notes" / "thesis.txt").read_text() == "precious"
    convert(tmp_path / "src" / "ViT-B-32__openai", tmp_path / "*", "x/y")  # a name that is a glob pattern
    assert (tmp_path / ".other.partial-x").is_dir() and (tmp_path / "*" / "model.json").is_file()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_other_weights_under_the_same_repository_get_another_name(tmp_path):
    """The name is stored with every embedding: a store refuses to mix two revisions' vectors."""
    first = convert(layouts.immich_clip(tmp_path / "a"), tmp_path / "one", "x/y")
    folder = layouts.immich_clip(tmp_path / "b")
    model = onnx.load(str(folder / "visual" / "model.onnx"))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))  # other weights
    onnx.save(model, str(folder / "visual" / "model.onnx"))
    second = convert(folder, tmp_path / "two", "x/y")
    assert first.name != second.name and first.name.startswith("x/y@") and second.name.startswith("x/y@")
    assert convert(layouts.immich_clip(tmp_path / "c"), tmp_path / "three", "x/y", name="mine").name == "mine"


def test_an_nllb_tower_refuses_a_language_it_has_no_code_for(tmp_path):
    """`abc_Defg` passed validation and was read as whatever the tower made of it."""
    from columnist.models.clip import LanguageNotRead

    convert(layouts.immich_nllb(tmp_path / "src"), tmp_path / "model", "immich-app/nllb-clip-base-siglip__v1")
    encoder = ClipEncoder.from_directory(tmp_path / "model")
    with pytest.raises(LanguageNotRead, match="'abc_Defg' \\(abc_Defg\\): the text tower .* has no token for it"):
        encoder.encode_texts_in(["la lune"], "abc_Defg")
    assert encoder.encode_texts_in(["la lune"], "fra_Latn").shape == (1, 512)


def test_names_from_outside_are_printed_escaped(tmp_path):
    """A folder named with a newline and a terminal escape cannot forge lines or colours."""
    evil = tmp_path / "evil\n\x1b[31mred"
    evil.mkdir()
    with pytest.raises(LayoutError) as refused:
        convert(evil, tmp_path / "out", "x/y")
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)
    assert "evil\\n\\x1b[31mred" in str(refused.value)
