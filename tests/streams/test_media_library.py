"""A phone and camera library through `tag`: HEIC, AVIF, JPEG XL, WebP, PNG, JPEG, a DNG and two
videos. Every file is stored or named; each video has its frames, one row in the wide view
(the maximum over its frames) and segments where an attribute holds; a new attribute reaches
frames, videos and segments from stored embeddings, without decoding anything again."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench import media as made
from columnist.models.mock import MockEncoder
from columnist.tagger import find_images, tag, walk
from columnist.vocab.schema import vocabulary_from_dict
from tests.conftest import PHOTOS

COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 180, 40), "yellow": (220, 200, 40)}


class ColourEncoder(MockEncoder):
    """A test double with a meaning the test can check: an image's embedding is its mean colour,
    a text's the colour it names (what a CLIP does for 'a red picture', without weights)."""

    name = "colour"

    def prepare_image(self, image):
        mean = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(axis=0)
        vector = np.zeros(self.dim, np.float32)
        vector[:3] = mean / np.linalg.norm(mean)
        return vector

    def encode_texts(self, texts):
        rows = []
        for text in texts:
            vector = np.zeros(self.dim, np.float32)
            colour = next((c for c in COLOURS if c in text), None)
            vector[:3] = np.asarray(COLOURS[colour], np.float32) if colour else (1, 1, 1)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows)


def colours(*codes: str, version: int = 1) -> "Vocabulary":  # noqa: F821
    return vocabulary_from_dict({
        "name": "colours", "version": version, "calibration": {"centre": 97, "scale": 0.5},
        "attributes": [{"code": code, "description": code} for code in codes]})


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    photo = made.photo("astronaut.jpg")
    for name, data in {"IMG_0001.HEIC": made.heic(photo), "IMG_0002.avif": made.avif(photo),
                       "IMG_0003.jxl": made.jxl(photo), "IMG_0004.dng": made.dng(photo),
                       "notes.txt": b"a shopping list", "IMG_0005.psd": b"8BPS"}.items():
        (folder / name).write_bytes(data)
    photo.save(folder / "IMG_0006.webp")
    photo.save(folder / "IMG_0007.png")
    shutil.copy(PHOTOS / "moon.jpg", folder / "IMG_0008.jpg")
    made.video(folder / "launch.mp4")  # red 0-1.5 s, blue 1.5-3, green 3-4.5, yellow 4.5-6
    made.video(folder / "clip.mov", scenes=((0.0, COLOURS["blue"]), (2.5, COLOURS["red"])), seconds=5)
    return folder


def rows(store, sql, **params):
    return store.query(sql, params)[1]


def test_a_phone_and_camera_library_is_tagged_with_videos_frames_and_segments(store, library):
    walked = walk([library])
    assert dict(walked.skipped) == {".txt": 1, ".psd": 1}  # named and counted, not silently dropped
    assert dict(walked.kinds()) == {"image": 6, "raw": 1, "video": 2}
    run = tag(walked.files, colours("red", "blue"), ColourEncoder(), store, batch_size=4)
    assert run.failed == [] and run.counters.images_stored == 9

    kinds = dict(rows(store, "SELECT kind, count() FROM columnist.images FINAL GROUP BY kind"))
    assert kinds == {"image": 7, "video": 2}
    launch = (library / "launch.mp4").resolve().as_uri()
    assert rows(store, "SELECT seconds FROM columnist.video_frames FINAL WHERE video_id = {v:String} ORDER BY seconds",
                v=launch) == [(0.0,), (1.5,), (3.0,), (4.5,)]
    assert rows(store, "SELECT duration, frames FROM columnist.images FINAL WHERE image_id = {v:String}", v=launch) == \
        [(6.0, 4)]
    # one row per video in the wide view: the maximum over its frames
    wide = dict(rows(store, "SELECT image_id, red FROM columnist.columns_colours"))
    frames = [s for (s,) in rows(store, "SELECT score FROM columnist.feature_image_attribute FINAL WHERE attribute = 'red' "
                                        "AND image_id LIKE {p:String}", p=launch + "#t=%")]
    assert len(wide) == 9 and wide[launch] == pytest.approx(max(frames)) and wide[launch] > 0.8
    # segments: where each colour holds, at the times the film changes scene
    segments = rows(store, "SELECT video_id, attribute, start_s, end_s FROM columnist.video_segments "
                           "ORDER BY video_id, attribute, start_s")
    clip = (library / "clip.mov").resolve().as_uri()
    assert segments == [(clip, "blue", 0.0, 2.5), (clip, "red", 2.5, 5.0),
                        (launch, "blue", 1.5, 3.0), (launch, "red", 0.0, 1.5)]


def test_a_new_attribute_reaches_frames_videos_and_segments_without_decoding(store, library):
    files = find_images([library])
    tag(files, colours("red", "blue"), ColourEncoder(), store)
    again = tag(files, colours("red", "blue", "green", version=2), ColourEncoder(), store)
    assert (again.counters.images_decoded, again.counters.images_encoded, again.counters.images_unchanged) == (0, 0, 9)
    assert again.applied is not None and again.applied.diff.added == ("green",)
    launch = (library / "launch.mp4").resolve().as_uri()
    assert rows(store, "SELECT start_s, end_s FROM columnist.video_segments WHERE video_id = {v:String} "
                       "AND attribute = 'green'", v=launch) == [(3.0, 4.5)]
    green = dict(rows(store, "SELECT image_id, green FROM columnist.columns_colours"))
    assert len(green) == 9 and green[launch] > 0.8 and all(value is not None for value in green.values())


def test_an_image_replaced_by_a_video_leaves_no_embedding_of_the_image_and_store_check_finds_all_well(store, library):
    from columnist.store.check import find

    still = library / "still.jpg"
    shutil.copy(library / "IMG_0008.jpg", still)
    vocabulary, encoder = colours("red", "blue"), ColourEncoder()
    tag([("samples/x", still)], vocabulary, encoder, store)
    tag([("samples/x", library / "launch.mp4")], vocabulary, encoder, store)  # the same id, now a video
    assert rows(store, "SELECT count() FROM columnist.image_embedding FINAL WHERE image_id = 'samples/x'") == [(0,)]
    assert rows(store, "SELECT count() FROM columnist.video_frames FINAL WHERE video_id = 'samples/x'") == [(4,)]
    found = find(store, encoder.name, [vocabulary], grace=0)
    assert found.images_without_embedding == 0 and found.content_differs == 0  # a video's embeddings are its frames'
    assert found.videos_missing_frames == 0 and found.clean

    (frame,), *_ = rows(store, "SELECT frame_id FROM columnist.video_frames WHERE video_id = 'samples/x'")
    store.command("DELETE FROM columnist.image_embedding WHERE image_id = {f:String}", {"f": frame})
    found = find(store, encoder.name, [vocabulary], grace=0)
    assert found.videos_missing_frames == 1 and found.examples["videos missing a frame's embedding"] == ["samples/x"]
    assert not found.clean
    again = tag([("samples/x", library / "launch.mp4")], vocabulary, encoder, store)  # what check advises
    assert again.counters.images_unchanged == 0 and again.counters.images_encoded == 4  # every frame again
    assert find(store, encoder.name, [vocabulary], grace=0).clean
