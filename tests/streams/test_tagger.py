import shutil

import pytest

from columnist.models.mock import MockEncoder
from columnist.streams.tagger import find_images, tag
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


def test_find_images_walks_folders_with_relative_ids(mixed_folder):
    ids = [image_id for image_id, _ in find_images([mixed_folder])]
    assert "nested/moon.jpg" in ids and "moon.jpg" in ids and "README.txt" not in ids
    assert find_images([mixed_folder / "moon.jpg"]) == [("moon.jpg", mixed_folder / "moon.jpg")]


def test_bad_files_are_named_and_every_good_one_is_stored(store, space_vocab, mixed_folder):
    files = find_images([mixed_folder])
    report = tag(files, space_vocab, MockEncoder(), store, batch_size=4)
    good = len(list(PHOTOS.glob("*.jpg"))) + 1
    assert report.tagged == good
    failed = dict(report.failed)
    assert set(failed) == {str(mixed_folder / n) for n in ("empty.jpg", "notes.png", "cut.jpg")}
    assert failed[str(mixed_folder / "empty.jpg")] == "empty file (0 bytes)"
    assert "not an image" in failed[str(mixed_folder / "notes.png")]
    assert store.scalar("SELECT count() FROM columnist.image_embedding FINAL") == good
    assert store.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL") == good * len(space_vocab.codes)
