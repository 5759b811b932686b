"""Moving a store to another model (model_change) on the real engine, as `tag`'s store is
moved by hand: re-embed from the images' URIs, shadow scores beside the served ones, compare,
cutover in one step, undo, retire. The worker's side is in tests/streams/worker."""

from __future__ import annotations

import shutil

import pytest

from columnist import model_change
from columnist.models.mock import MockEncoder
from columnist.prompt_cache import PromptCache
from columnist.records import ModelState
from columnist.store import ModelMismatch, ModelMovedOn, check_model, migration
from columnist.tagger import find_images, tag
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import vocabulary_from_dict
from columnist.vocabulary_change import apply_vocabulary
from columnist.worker.fetch import fetch, policy_from
from columnist.settings import Settings
from tests.conftest import PHOTOS

pytestmark = pytest.mark.integration
PHOTO_COUNT = len(list(PHOTOS.glob("*.jpg")))


def other_model() -> MockEncoder:
    """A second model: another mock, of another size (its vectors differ from the first's)."""
    encoder = MockEncoder(dim=256)
    encoder.name = "mock-256"
    return encoder


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    return folder


def reembedder(store, target, folder, **options) -> model_change.Reembedder:
    policy = policy_from(Settings(), roots=[folder.resolve()])
    texts = [(v, text_embeddings(PromptCache(target, store), v)) for v in store.applied_vocabularies()]
    return model_change.Reembedder(store, target, lambda: texts, lambda uri: fetch(uri, policy), **options)


def view(store, vocab_name: str = "space") -> tuple[int, int]:
    """(rows of the wide view, rows with any attribute column NULL): every image, complete."""
    codes = [c for (c,) in store.query("SELECT code FROM columnist.vocabulary_current WHERE vocab_name = "
                                       "{v:String}", {"v": vocab_name})[1]]
    nulls = " OR ".join(f"`{c}` IS NULL" for c in codes)
    return store.query(f"SELECT count(), countIf({nulls}) FROM columnist.columns_{vocab_name}")[1][0]


def test_a_store_moves_to_another_model_and_back_and_retires_the_old_one(store, space_vocab, library):
    first, second = MockEncoder(), other_model()
    tag(find_images([library]), space_vocab, first, store)
    before = dict(store.query("SELECT image_id, moon FROM columnist.image_columns")[1])

    state = model_change.begin(store, second, "mock-256")
    assert state == ModelState("mock", "mock", "mock-256", "mock-256")
    with pytest.raises(model_change.MigrationRefused, match="already moving from 'mock' to 'mock-256'"):
        model_change.begin(store, MockEncoder(dim=128), "another")
    with pytest.raises(model_change.CoverageIncomplete, match=f"{PHOTO_COUNT} images lack the embedding of mock-256"):
        model_change.cutover(store, "mock-256")

    report = reembedder(store, second, library, batch_size=3, chunks=migration.BUCKETS).run()
    assert report.images == PHOTO_COUNT and not report.missing and report.chunks == migration.BUCKETS
    assert model_change.coverage(store, "mock-256").complete
    assert dict(store.query("SELECT image_id, moon FROM columnist.image_columns")[1]) == before  # still the old model
    assert store.count_scores("space", space_vocab.codes, "mock-256") == PHOTO_COUNT * len(space_vocab.codes)

    changes = {c.attribute: c for c in migration.compare(store, "space", "mock", "mock-256", space_vocab.codes,
                                                         [space_vocab.thresholds_for(space_vocab.entry(c)).accept
                                                          for c in space_vocab.codes])}
    assert all(c.images == PHOTO_COUNT for c in changes.values())
    moon = changes["moon"]
    accepted_before = sum(score >= space_vocab.thresholds_for(space_vocab.entry("moon")).accept
                          for score in before.values())
    assert moon.kept + moon.lost == accepted_before and len(moon.gained_ids) == moon.gained

    state, found = model_change.cutover(store, "mock-256")
    assert (state.serving, state.previous, state.target) == ("mock-256", "mock", "") and found.complete
    with pytest.raises(model_change.MigrationRefused, match="holds embeddings of a model named 'mock' already"):
        model_change.begin(store, MockEncoder(), "mock")  # its old rows would pass for a new model's
    for blank in ("", "  "):  # no migration runs: a blank name must not match the empty target
        with pytest.raises(model_change.MigrationRefused, match="name the model"):
            model_change.cutover(store, blank, force=True)
        with pytest.raises(model_change.MigrationRefused, match="name the model"):
            model_change.retire(store, blank)
    assert view(store) == (PHOTO_COUNT, 0)
    assert dict(store.query("SELECT image_id, moon FROM columnist.image_columns")[1]) != before
    with pytest.raises(ModelMovedOn):
        check_model(store, "mock")  # tag or a worker still set to the old model follows the store (cli, worker)

    model_change.cutover(store, "mock")  # undone: nothing was deleted
    assert dict(store.query("SELECT image_id, moon FROM columnist.image_columns")[1]) == before
    model_change.cutover(store, "mock-256")
    with pytest.raises(model_change.MigrationRefused, match="the model the store serves"):
        model_change.retire(store, "mock-256")
    retired = model_change.retire(store, "mock")
    assert retired.rows["image_embedding"] == PHOTO_COUNT and retired.freed_bytes > 0
    for table in migration.MODEL_TABLES:
        assert store.scalar(f"SELECT count() FROM columnist.{table} WHERE model = 'mock'") == 0, table
    assert view(store) == (PHOTO_COUNT, 0)
    assert store.model_state().retired == ("mock",)


def test_images_and_vocabularies_that_arrive_during_a_migration_reach_both_models(store, space_vocab, library, tmp_path):
    first, second = MockEncoder(), other_model()
    tag(find_images([library]), space_vocab, first, store)
    model_change.begin(store, second, "mock-256")
    late = tmp_path / "late"
    late.mkdir()
    shutil.copy(PHOTOS / "moon.jpg", late / "moon-again.png")  # new id, same content: reused by both
    (late / "rocket.jpg").write_bytes((PHOTOS / "rocket.jpg").read_bytes() + b"\0")  # new content
    tag(find_images([late]), space_vocab, first, store, target=second)
    assert store.scalar("SELECT count() FROM columnist.image_embedding WHERE model = 'mock-256'") == 2

    document = space_vocab.model_dump(mode="json")
    document["version"] = 2
    document["attributes"].append({"code": "porthole_view", "description": "a view through a spacecraft window"})
    v2 = vocabulary_from_dict(document)
    apply_vocabulary(store, first, space_vocab, v2, 0, target=second, default_view=True)
    assert store.count_scores("space", ["porthole_view"], "mock-256") == 2  # replayed for the target too
    assert store.count_scores("space", ["porthole_view"], "mock") == PHOTO_COUNT + 2

    reembedder(store, second, library).run()
    found = model_change.coverage(store, "mock-256")
    assert found.complete, found
    model_change.cutover(store, "mock-256")
    assert view(store) == (PHOTO_COUNT + 2, 0)


def test_a_killed_reembed_resumes_and_unreadable_images_are_named_not_lost(store, space_vocab, library):
    first, second = MockEncoder(), other_model()
    # ids of a collection, not file URIs under pytest's numbered folder: the chunks the killed run
    # gets through before its fourth read are the same in every run (with URIs, now and then none)
    tag(find_images([library], collection="photos"), space_vocab, first, store)
    model_change.begin(store, second, "mock-256")
    (library / "coffee.jpg").unlink()
    (library / "moon.jpg").write_bytes((PHOTOS / "rocket.jpg").read_bytes())  # changed since it was stored
    done = []

    def killed_after_three(uri: str) -> bytes:
        if len(done) == 3:
            raise KeyboardInterrupt  # as kill -9 would stop it, between two images
        done.append(uri)
        return fetch(uri, policy_from(Settings(), roots=[library.resolve()]))
    job = reembedder(store, second, library, batch_size=1, chunks=8)
    job.read = killed_after_three
    with pytest.raises(KeyboardInterrupt):
        job.run()
    first_run = store.scalar("SELECT count() FROM columnist.image_embedding WHERE model = 'mock-256'")
    assert 0 < first_run <= 3

    report = reembedder(store, second, library, batch_size=1, chunks=8).run(start_at=5)
    assert report.chunks_skipped > 0  # the chunks the killed run finished
    assert first_run + report.images == PHOTO_COUNT - 2
    count, noted = migration.missing(store, "mock-256")
    reasons = dict(noted)
    assert count == 2 and "file not found" in next(r for i, r in reasons.items() if "coffee" in i)
    assert "sha256 differs" in next(r for i, r in reasons.items() if "moon" in i)
    with pytest.raises(model_change.CoverageIncomplete, match="2 images lack .* could not be read again"):
        model_change.cutover(store, "mock-256")
    state, found = model_change.cutover(store, "mock-256", force=True)
    assert found.lacking == 2 and view(store)[0] == PHOTO_COUNT - 2  # they leave the views, as the message said


def test_the_target_is_refused_as_the_model_to_write_with_and_an_unrelated_one_too(store, space_vocab, library):
    tag(find_images([library]), space_vocab, MockEncoder(), store)
    model_change.begin(store, other_model(), "mock-256")
    with pytest.raises(ModelMismatch, match="is moving to model 'mock-256' and serves 'mock'"):
        check_model(store, "mock-256")
    with pytest.raises(ModelMismatch, match="serves model 'mock', not 'tiny-clip'"):
        check_model(store, "tiny-clip")
    with pytest.raises(model_change.MigrationRefused, match="already serves 'mock'"):
        model_change.cutover(store, "mock")


def test_the_commands_move_a_tagged_folder_step_by_step(library, tmp_path):
    """`columnist model migrate | compare | cutover | retire` on tag's store, as a user runs them."""
    from tests.streams.test_cli import columnist

    db = f"chdb://{tmp_path / 'db'}"
    columnist("tag", str(library), "--db", db)  # tiny-clip, the default model
    (library / "coffee.jpg").rename(library / "coffee.moved")
    migrated = columnist("model", "migrate", "--to", "mock", "--db", db)
    assert f"embedded {PHOTO_COUNT - 1} images" in migrated.stdout and "coffee.jpg" in migrated.stderr
    refused = columnist("model", "cutover", "--to", "mock", "--db", db, check=False)
    assert refused.returncode == 3 and "1 images lack the embedding of mock" in refused.stderr
    checked = columnist("store", "check", "--db", db, check=False)  # mid-migration: what the views read is whole
    assert checked.returncode == 0 and "(model tiny-clip)" in checked.stdout, checked.stdout
    (library / "coffee.moved").rename(library / "coffee.jpg")
    assert "mock covers every image" in columnist("model", "migrate", "--to", "mock", "--db", db).stdout
    page = tmp_path / "compare.html"
    compared = columnist("model", "compare", "--db", db, "--html", str(page))
    assert "tiny-clip -> mock" in compared.stdout and compared.stdout.count("\n") > 40 and page.exists()
    assert "now read mock" in columnist("model", "cutover", "--to", "mock", "--db", db).stdout
    again = columnist("tag", str(library), "--db", db)  # COLUMNIST_MODEL still names tiny-clip
    assert "moved from model 'tiny-clip' to 'mock'" in again.stderr and "using mock" in again.stderr
    assert columnist("tag", str(library), "--db", db, "--model", "tiny-clip", check=False).returncode == 3
    retired = columnist("model", "retire", "tiny-clip", "--db", db)
    assert "deleted" in retired.stdout and "MB freed" in retired.stdout
    assert columnist("model", "retire", "tiny-clip", "--db", db, check=False).returncode == 3


def test_a_target_that_does_not_run_is_refused_before_the_state_changes_and_a_migration_can_be_abandoned(
        store, space_vocab, library, tmp_path):
    import json

    from columnist.models.layouts import LayoutError
    from columnist.models.registry import load_encoder, resolve_model_dir

    tag(find_images([library]), space_vocab, MockEncoder(), store)
    broken = tmp_path / "swapped"
    shutil.copytree(resolve_model_dir("tiny-clip"), broken)
    spec = json.loads((broken / "model.json").read_text())
    spec["visual"], spec["textual"] = spec["textual"], spec["visual"]  # the towers' files swapped
    (broken / "model.json").write_text(json.dumps(spec))
    with pytest.raises(LayoutError, match="swapped"):
        model_change.begin(store, load_encoder(str(broken)), str(broken))
    assert store.model_state().target == ""  # nothing recorded: another migration may begin

    second = other_model()
    model_change.begin(store, second, "mock-256")
    reembedder(store, second, library, batch_size=4).run()
    assert store.scalar("SELECT count() FROM columnist.image_embedding WHERE model = 'mock-256'") == PHOTO_COUNT
    report = model_change.retire(store, "mock-256")  # the store was moving to it: the migration is abandoned
    assert report.rows["image_embedding"] == PHOTO_COUNT
    state = store.model_state()
    assert (state.serving, state.target) == ("mock", "") and "mock-256" not in store.embedding_models()
    assert view(store) == (PHOTO_COUNT, 0)
    model_change.begin(store, second, "mock-256")  # and may begin again


def test_a_relative_model_folder_is_recorded_as_an_absolute_path(store, space_vocab, library, tmp_path, monkeypatch):
    from columnist.models.registry import load_encoder, resolve_model_dir

    tag(find_images([library]), space_vocab, MockEncoder(), store)
    shutil.copytree(resolve_model_dir("tiny-clip"), tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    state = model_change.begin(store, load_encoder("tiny"), "tiny")
    assert state.target_ref == str(tmp_path / "tiny")


def test_the_first_writer_records_how_its_model_is_loaded(store, tmp_path, space_vocab, library, monkeypatch):
    """A store first written with --model FOLDER names the folder, not the model's name, so
    another process (a worker elsewhere, an undone cutover) can load it again."""
    from columnist.models.registry import load_encoder, resolve_model_dir

    shutil.copytree(resolve_model_dir("tiny-clip"), tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    encoder = load_encoder("mine")
    assert store.model_state() is None
    store.remember_ref(encoder.name, encoder.ref)
    tag(find_images([library]), space_vocab, encoder, store)
    state = store.model_state()
    assert (state.serving, state.serving_ref) == (encoder.name, str(tmp_path / "mine"))


def test_an_image_deleted_while_the_job_embeds_it_leaves_no_rows(store, space_vocab, library):
    """A delete event handled between the job's read of its page and its write of the batch."""
    from columnist.store.check import count_orphans

    tag(find_images([library]), space_vocab, MockEncoder(), store)
    second = other_model()
    model_change.begin(store, second, "mock-256")
    job = reembedder(store, second, library, batch_size=3)
    read, deleted = job.read, []

    def read_then_deleted(uri: str) -> bytes:
        if not deleted:
            deleted.append(uri)
            store.delete_images([uri])  # the image ids of tag are the files' URIs
        return read(uri)
    job.read = read_then_deleted
    job.run()
    for table in ("image_embedding", "feature_image_attribute"):
        assert store.scalar(f"SELECT count() FROM columnist.{table} WHERE image_id = {{i:String}}",
                            {"i": deleted[0]}) == 0, table
    assert count_orphans(store, 0) == (0, 0)
