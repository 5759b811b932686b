import os
import shutil
import threading

import pytest

from columnist.models.mock import MockEncoder
from columnist.pipeline import embed_and_score, prepare
from columnist.tagger import _one_ahead, _OneBehind, find_images, skipped_summary, tag, walk
from columnist.vocab.prompts import text_embeddings
from tests.conftest import PHOTOS

pytestmark = pytest.mark.integration


@pytest.fixture
def mixed_folder(tmp_path):
    """The sample photos plus files that are not usable images."""
    folder = tmp_path / "mixed"
    shutil.copytree(PHOTOS, folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    (folder / "cut.jpg").write_bytes((PHOTOS / "astronaut.jpg").read_bytes()[:2000])
    (folder / "README.txt").write_text("ignored: no image suffix")
    (folder / "nested").mkdir()
    shutil.copy(PHOTOS / "moon.jpg", folder / "nested" / "moon.jpg")
    return folder


def test_image_ids_are_file_uris_or_collection_paths(mixed_folder):
    ids = [image_id for image_id, _ in find_images([mixed_folder])]
    assert (mixed_folder / "nested" / "moon.jpg").resolve().as_uri() in ids
    assert not any("README" in i for i in ids)
    assert find_images([mixed_folder / "moon.jpg"]) == [((mixed_folder / "moon.jpg").resolve().as_uri(),
                                                         mixed_folder / "moon.jpg")]
    namespaced = [image_id for image_id, _ in find_images([mixed_folder], collection="trip")]
    assert "trip/nested/moon.jpg" in namespaced and "trip/moon.jpg" in namespaced
    assert find_images([mixed_folder / "moon.jpg"], "trip") == [("trip/moon.jpg", mixed_folder / "moon.jpg")]


def test_a_file_name_that_is_not_utf8_is_tagged_under_an_id_that_is_text(store, space_vocab, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    latin1 = folder / os.fsdecode(b"m\xffoon.jpg")
    shutil.copy(PHOTOS / "moon.jpg", latin1)
    files = find_images([folder], collection="old")
    assert files == [("old/m\\xffoon.jpg", latin1)]
    report = tag(files, space_vocab, MockEncoder(), store, batch_size=4)
    assert report.counters.images_stored == 1 and not report.failed
    _, rows = store.query("SELECT image_id, uri FROM columnist.images")
    assert rows == [("old/m\\xffoon.jpg", latin1.as_uri())]  # the URI percent-encodes the byte: file:///…/m%FFoon.jpg


def test_two_files_with_one_id_are_never_stored_as_one_and_the_second_is_named(tmp_path):
    for folder, photo in (("q1", "moon.jpg"), ("q2", "rocket.jpg")):
        (tmp_path / folder).mkdir()
        shutil.copy(PHOTOS / photo, tmp_path / folder / "a.jpg")
    walked = walk([tmp_path / "q1", tmp_path / "q2", tmp_path / "q1" / ".." / "q1"], collection="cx")
    assert walked.files == [("cx/a.jpg", tmp_path / "q1" / "a.jpg")]
    assert walked.clashes == [(tmp_path / "q2" / "a.jpg", "cx/a.jpg", tmp_path / "q1" / "a.jpg")]
    assert walked.skipped == {"(given more than once)": 1}  # the same file again is not a clash
    [(name, reason)] = walked.clash_reasons()
    assert name.endswith("q2/a.jpg") and "cx/a.jpg" in reason and "q1/a.jpg" in reason
    assert not walk([tmp_path / "q1", tmp_path / "q2"]).clashes  # file URIs: two ids


def test_hidden_files_links_to_folders_and_odd_suffixes_are_counted_not_dropped(tmp_path):
    shutil.copy(PHOTOS / "moon.jpg", tmp_path / ".hidden.jpg")
    (tmp_path / ".thumbnails").mkdir()
    shutil.copy(PHOTOS / "moon.jpg", tmp_path / ".thumbnails" / "moon.jpg")
    (tmp_path / "elsewhere").symlink_to(PHOTOS, target_is_directory=True)
    (tmp_path / "a.\x1b]0;pwned").write_text("x")
    walked = walk([tmp_path])
    assert walked.files == [(tmp_path.joinpath(".thumbnails", "moon.jpg").absolute().as_uri(),
                             tmp_path / ".thumbnails" / "moon.jpg")]  # a hidden folder is walked, as watch walks it
    assert walked.skipped["(hidden)"] == 1
    assert walked.skipped["(link to a folder, not walked: name it to tag it)"] == 1
    assert "\x1b" not in skipped_summary(walked.skipped) and "\\x1b" in skipped_summary(walked.skipped)


def test_bad_files_are_named_and_every_good_one_is_stored(store, space_vocab, mixed_folder):
    files = find_images([mixed_folder])
    report = tag(files, space_vocab, MockEncoder(), store, batch_size=4)
    good = len(list(PHOTOS.glob("*.jpg"))) + 1
    assert report.counters.images_stored == good
    failed = dict(report.failed)
    assert set(failed) == {str(mixed_folder / n) for n in ("empty.jpg", "notes.png", "cut.jpg")}
    assert failed[str(mixed_folder / "empty.jpg")] == "empty file (0 bytes)"
    assert "not an image" in failed[str(mixed_folder / "notes.png")]
    assert store.scalar("SELECT count() FROM columnist.image_embedding FINAL") == good
    assert store.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL") == good * len(space_vocab.codes)


def counts(store) -> tuple:
    """Rows of every table, counted with FINAL: what 'the store did not change' means."""
    return tuple(store.scalar(f"SELECT count() FROM columnist.{t} FINAL") for t in (
        "images", "image_embedding", "feature_image_attribute", "vocabulary", "vocabulary_applied"))


def test_same_file_names_in_two_folders_are_two_images(store, space_vocab, tmp_path):
    for folder, photo in (("a", "astronaut.jpg"), ("b", "moon.jpg")):
        (tmp_path / folder).mkdir()
        shutil.copy(PHOTOS / photo, tmp_path / folder / "IMG_0001.jpg")
        tag(find_images([tmp_path / folder]), space_vocab, MockEncoder(), store)
        tag(find_images([tmp_path / folder], folder), space_vocab, MockEncoder(), store, collection=folder)
    _, rows = store.query("SELECT image_id FROM columnist.images FINAL ORDER BY image_id")
    assert [r[0] for r in rows] == sorted(["a/IMG_0001.jpg", "b/IMG_0001.jpg",
                                           (tmp_path / "a/IMG_0001.jpg").as_uri(), (tmp_path / "b/IMG_0001.jpg").as_uri()])


def test_a_rerun_encodes_nothing_and_identical_content_is_encoded_once(store, space_vocab, tmp_path):
    shutil.copytree(PHOTOS, tmp_path / "photos")
    shutil.copy(PHOTOS / "moon.jpg", tmp_path / "photos" / "moon-copy.jpg")
    photos = len(list(PHOTOS.glob("*.jpg")))
    first = tag(find_images([tmp_path / "photos"]), space_vocab, MockEncoder(), store)
    assert (first.counters.images_stored, first.counters.images_encoded, first.counters.images_unchanged) == (photos + 1, photos, 0)  # the copy reuses moon's embedding
    created = store.query("SELECT image_id, created_at FROM columnist.image_embedding FINAL ORDER BY image_id")
    again = tag(find_images([tmp_path / "photos"]), space_vocab, MockEncoder(), store)
    assert (again.counters.images_stored, again.counters.images_encoded, again.counters.images_unchanged) == (0, 0, photos + 1)
    assert store.query("SELECT image_id, created_at FROM columnist.image_embedding FINAL ORDER BY image_id") == created
    forced = tag(find_images([tmp_path / "photos"]), space_vocab, MockEncoder(), store, force=True)
    assert (forced.counters.images_stored, forced.counters.images_encoded) == (photos + 1, photos)  # re-encoded; the copy still shares its content
    _, same = store.query("SELECT uniqExact(embedding) FROM columnist.image_embedding FINAL "
                          "WHERE image_id LIKE '%moon%'")
    assert same == [(1,)]


class OpensSoon(MockEncoder):
    """The mock encoder with the early-opening hook a model with towers has, counting calls."""

    def __init__(self):
        super().__init__()
        self.opened_soon = 0

    def open_image_tower_soon(self):
        self.opened_soon += 1


def test_the_image_tower_is_opened_early_only_when_the_run_will_encode(store, space_vocab, tmp_path):
    shutil.copytree(PHOTOS, tmp_path / "photos")
    files = find_images([tmp_path / "photos"])
    new, nothing_new, forced = OpensSoon(), OpensSoon(), OpensSoon()
    tag(files, space_vocab, new, store)
    tag(files, space_vocab, nothing_new, store)
    tag(files, space_vocab, forced, store, force=True)
    assert (new.opened_soon, nothing_new.opened_soon, forced.opened_soon) == (1, 0, 1)


def test_a_pipe_or_a_link_in_a_folder_is_counted_not_dropped_silently(tmp_path):
    import os

    shutil.copy(PHOTOS / "moon.jpg", tmp_path / "moon.jpg")
    os.mkfifo(tmp_path / "never.jpg")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "moon.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nothing-here")
    walked = walk([tmp_path])
    assert [p.name for _, p in walked.files] == ["link.jpg", "moon.jpg"]
    assert dict(walked.skipped) == {"(not a regular file)": 2}  # the pipe and the broken link
    unfollowed = walk([tmp_path], follow_links=False)
    assert [p.name for _, p in unfollowed.files] == ["moon.jpg"]
    assert dict(unfollowed.skipped) == {"(not a regular file)": 1, "(link, not followed)": 2}


def test_the_next_batch_is_taken_while_the_caller_works_on_this_one():
    started = {n: threading.Event() for n in range(3)}

    def take(n):
        started[n].set()
        return n * 10

    seen = []
    for result in _one_ahead(take, [0, 1, 2]):
        following = result // 10 + 1
        if following < 3:  # taken meanwhile, on the other thread (a serial loop would wait forever)
            assert started[following].wait(timeout=30)
        seen.append(result)
    assert seen == [0, 10, 20]


def test_a_failure_taking_a_batch_reaches_the_caller_at_that_batch():
    def take(n):
        if n == 1:
            raise OSError("disk gone")
        return n

    taken = _one_ahead(take, [0, 1, 2])
    assert next(taken) == 0
    with pytest.raises(OSError, match="disk gone"):
        next(taken)


def test_writes_run_one_at_a_time_in_order_and_a_failure_reaches_the_caller():
    done, running = [], threading.Semaphore(1)

    def write(n):
        assert running.acquire(blocking=False), "two writes at once"
        done.append(n)
        running.release()
        if n == 2:
            raise OSError("store gone")

    with pytest.raises(OSError, match="store gone"):
        with _OneBehind() as writes:
            for n in range(3):
                writes.submit(write, n)
    assert done == [0, 1, 2]


def test_the_same_content_in_the_next_batch_is_stored_for_both_names(store, space_vocab, tmp_path):
    """The next batch is looked up while this one encodes, so a copy there is encoded again:
    the same embedding, stored for both names."""
    (tmp_path / "a.jpg").write_bytes((PHOTOS / "moon.jpg").read_bytes())
    (tmp_path / "b.jpg").write_bytes((PHOTOS / "moon.jpg").read_bytes())
    run = tag(find_images([tmp_path]), space_vocab, MockEncoder(), store, batch_size=1)
    assert run.counters.images_stored == 2 and not run.failed
    _, same = store.query("SELECT count(), uniqExact(embedding) FROM columnist.image_embedding FINAL")
    assert same == [(2, 1)]


PETS = {"name": "pets", "version": 1, "attributes": [
    {"code": "earth", "description": "a dog digging in the earth"}, {"code": "cat", "description": "a cat"}]}


def test_batches_are_written_a_group_at_a_time_each_image_with_its_own_scores(store, space_vocab):
    """Seven photos in batches of two, written three batches at a time: two writes, every photo
    stored once with the scores it gets written on its own."""
    class Counting:  # the real store, its writes counted (a test double around it)
        def __init__(self, inner):
            self.inner, self.writes = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def write(self, batch):
            self.writes.append(len(batch.images))
            return self.inner.write(batch)

    counting = Counting(store)
    run = tag(find_images([PHOTOS]), space_vocab, MockEncoder(), counting, batch_size=2, write_group=3)

    assert counting.writes == [6, 1] and run.counters.images_stored == 7
    alone = MockEncoder()
    texts = [(space_vocab, text_embeddings(alone, space_vocab))]
    for code in space_vocab.codes[:3]:
        stored = {image_id: score for image_id, score, _ in store.attribute_scores(space_vocab.name, code)}
        assert len(stored) == 7
        for photo in sorted(PHOTOS.glob("*.jpg")):
            image_id = next(i for i in stored if i.endswith(photo.name))
            own = embed_and_score([prepare(photo.read_bytes(), photo.name, alone, image_id, photo.as_uri())], texts,
                                  alone)
            assert abs(own.scores[0].scores[code][0] - stored[image_id]) < 1e-5, (photo.name, code)

def test_two_vocabularies_sharing_a_code_keep_both_scores_and_views(store, space_vocab):
    from columnist.vocab.schema import vocabulary_from_dict

    pets = vocabulary_from_dict(PETS)
    tag(find_images([PHOTOS]), space_vocab, MockEncoder(), store)
    report = tag(find_images([PHOTOS]), pets, MockEncoder(), store, default_view=False)
    assert report.counters.images_encoded == 0  # pets was scored from the stored embeddings when it was applied
    photos = len(list(PHOTOS.glob("*.jpg")))
    assert store.count_scores("space", ["earth"]) == store.count_scores("pets", ["earth"]) == photos
    different = store.scalar("SELECT countIf(s.score != p.score) FROM "
                             "(SELECT image_id, score FROM columnist.feature_image_attribute FINAL "
                             " WHERE vocab_name = 'space' AND attribute = 'earth') AS s "
                             "JOIN (SELECT image_id, score FROM columnist.feature_image_attribute FINAL "
                             " WHERE vocab_name = 'pets' AND attribute = 'earth') AS p USING image_id")
    assert different == photos  # two descriptions, two sets of scores
    _, columns = store.query("SELECT table, groupArray(name) FROM system.columns WHERE database = 'columnist' "
                             "AND table IN ('columns_space', 'columns_pets', 'image_columns') GROUP BY table ORDER BY table")
    views = dict(columns)
    assert views["columns_pets"] == ["image_id", "collection", "uri", "ingested_at", "earth", "cat"]
    assert views["image_columns"] == views["columns_space"] == ["image_id", "collection", "uri", "ingested_at",
                                                                *space_vocab.codes]
    assert store.scalar("SELECT count() FROM columnist.columns_pets WHERE cat IS NOT NULL") == photos


def test_an_older_vocabulary_or_another_model_is_refused_and_nothing_changes(store, space_vocab):
    from columnist.store import ModelMismatch
    from columnist.vocabulary_change import VocabularyConflict
    from columnist.vocab.schema import vocabulary_from_dict

    document = space_vocab.model_dump(mode="json")
    newer = vocabulary_from_dict({**document, "version": 3})
    tag(find_images([PHOTOS]), newer, MockEncoder(), store)
    before = counts(store)
    with pytest.raises(VocabularyConflict, match="v1 is older than the applied v3"):
        tag(find_images([PHOTOS]), space_vocab, MockEncoder(), store, force=True)
    same_number = vocabulary_from_dict({**document, "version": 3, "description": "edited without a new version"})
    with pytest.raises(VocabularyConflict, match="differs from the applied v3 of the same number"):
        tag(find_images([PHOTOS]), same_number, MockEncoder(), store, force=True)
    other_model = MockEncoder()
    other_model.name = "mock-2"
    with pytest.raises(ModelMismatch, match="serves model 'mock', not 'mock-2'.*columnist model migrate --to mock-2"):
        tag(find_images([PHOTOS]), newer, other_model, store, force=True)
    assert counts(store) == before


def test_files_over_the_size_limit_are_refused_before_they_are_read(store, space_vocab, tmp_path):
    from columnist.records import ImageLimits

    folder = tmp_path / "sparse"
    folder.mkdir()
    shutil.copy(PHOTOS / "moon.jpg", folder / "moon.jpg")
    with open(folder / "huge.png", "wb") as file:  # 1 GB, sparse: nothing on disk, all of it if read
        file.truncate(1_000_000_000)
    report = tag(find_images([folder]), space_vocab, MockEncoder(), store, limits=ImageLimits(max_bytes=10_000_000))
    assert report.counters.images_stored == 1
    assert report.failed == [(str(folder / "huge.png"), "cannot read file: 1,000,000,000 bytes, over the limit of 10,000,000 bytes")]


def test_an_image_the_model_crashes_on_is_named_and_the_others_stored(store, space_vocab, tmp_path):
    from tests.streams.worker.test_service import PoisonEncoder

    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    report = tag(find_images([folder]), space_vocab, PoisonEncoder(), store, batch_size=4)
    assert [name for name, _ in report.failed] == [str(folder / "hubble_deep_field.jpg")]
    assert "crashed on this image" in report.failed[0][1]
    assert report.counters.images_stored == len(list(PHOTOS.glob("*.jpg"))) - 1
    assert store.scalar("SELECT count() FROM columnist.images FINAL") == report.counters.images_stored
