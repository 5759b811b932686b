"""What phones and cameras write: HEIC, AVIF, JPEG XL, camera RAW and video, made here with the
libraries that write them. Each format decodes like its reference decoder, with the same
bounds as any image (pixels from the header before decoding); each one's bombs are refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench import media as made
from tests.hostile import dng_claiming, heic_declaring, jxl_claiming
from columnist.models import media, video
from columnist.models.images import ImageError, decode
from columnist.models.registry import load_encoder

PHOTO = made.photo("astronaut.jpg")


@pytest.fixture(scope="module")
def tiny_clip():
    return load_encoder("tiny-clip")


def reference(fmt: str, data: bytes) -> Image.Image:
    """The format's own decoder, called directly (no columnist code in between)."""
    if fmt == "heic":
        import pillow_heif

        return pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True).to_pillow().convert("RGB")
    if fmt == "jxl":
        import pillow_jxl  # noqa: F401

    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("fmt", ["heic", "avif", "jxl"])
def test_stills_decode_like_their_reference_decoder_and_embed_like_the_original(fmt, tiny_clip):
    data = getattr(made, fmt)(PHOTO)
    assert media.kind_of(data, f"IMG_0001.{fmt}") == media.IMAGE
    decoded = decode(data, f"IMG_0001.{fmt}")
    assert np.array_equal(np.asarray(decoded.image), np.asarray(reference(fmt, data)))  # bit for bit
    assert (decoded.width, decoded.height) == PHOTO.size
    original, ours = tiny_clip.encode_images([PHOTO, decoded.image])
    assert float(original @ ours) > 0.99  # lossy, but the same photo to the model


def test_a_heic_rotated_by_its_container_is_upright():
    rotated = PHOTO.crop((0, 0, 320, 200))
    data = made.heic(rotated.rotate(90, expand=True))  # what a phone held sideways stores...
    assert decode(data, "portrait.heic").image.size == (200, 320)


def test_a_heic_thumbnail_stands_in_only_from_twice_the_models_side():
    """A HEIC's embedded thumbnail is another, more compressed picture: decoding for a 224-pixel
    model uses one only when its short side is 448 pixels or more."""
    photo = PHOTO.resize((1200, 900))
    assert decode(made.heic(photo, thumbnails=[400]), "small-thumb.heic", at_least=224).image.size == (1200, 900)
    assert decode(made.heic(photo, thumbnails=[400, 1000]), "thumbs.heic", at_least=224).image.size == (1000, 750)


def test_a_camera_raw_uses_its_preview_when_large_enough_else_a_half_size_develop():
    big = PHOTO.resize((1200, 900))
    with_preview = made.dng(big, preview_side=1200)
    assert media.kind_of(with_preview, "IMG_0001.dng") == media.RAW
    decoded = decode(with_preview, "IMG_0001.dng", at_least=224)
    embedded = Image.open(io.BytesIO(_preview_jpeg(with_preview)))
    embedded.draft("RGB", (224, 224))
    assert np.array_equal(np.asarray(decoded.image), np.asarray(embedded.convert("RGB")))  # the preview itself
    assert (decoded.width, decoded.height) == (1200, 900)  # the sensor's size is the photo's
    developed = decode(made.dng(big, preview_side=None), "no-preview.dng", at_least=224)
    assert developed.image.size == (600, 450) and (developed.width, developed.height) == (1200, 900)
    grey = [np.asarray(i.convert("L"), np.float32).ravel() for i in (developed.image, big.resize((600, 450)))]
    assert np.corrcoef(*grey)[0, 1] > 0.9  # the camera's colour processing, not the photo's levels: the same picture
    small_preview = decode(made.dng(big, preview_side=400), "thumb-only.dng", at_least=224)
    assert small_preview.image.size == (600, 450)  # a preview under twice the model's side is not used


def _preview_jpeg(dng: bytes) -> bytes:
    import rawpy

    with rawpy.imread(io.BytesIO(dng)) as raw:
        return bytes(raw.extract_thumb().data)


def test_a_video_is_sampled_by_time_and_at_every_scene_change(tmp_path):
    path = made.video(tmp_path / "clip.mp4")
    data = path.read_bytes()
    assert media.kind_of(data, "clip.mp4") == media.VIDEO
    sampled = video.sample(data, video.VideoLimits(interval=2.0))
    assert [t for t, _ in sampled.frames] == [0.0, 1.5, 3.0, 4.5]  # the cuts the film has
    assert (sampled.width, sampled.height, sampled.duration) == (320, 240, 6.0)
    for (t, frame), (start, colour) in zip(sampled.frames, made.SCENES):
        assert np.abs(np.asarray(frame).reshape(-1, 3).mean(axis=0) - colour).max() < 12
    steady = video.sample(made.video(tmp_path / "one.mp4", scenes=((0.0, (90, 90, 90)),), seconds=9).read_bytes())
    assert [t for t, _ in steady.frames] == [0.0, 2.0, 4.0, 6.0, 8.0]  # by time alone
    assert video.frame_id("trip/clip.mp4", 1.5) == "trip/clip.mp4#t=1.500"
    assert video.parse_frame_id("trip/clip.mp4#t=1.500") == ("trip/clip.mp4", 1.5)
    assert video.parse_frame_id("a#t=x") is None and video.parse_frame_id("#t=1") is None


def test_a_frame_is_found_again_by_its_time_for_a_thumbnail(tmp_path):
    data = made.video(tmp_path / "clip.mp4").read_bytes()
    for seconds, colour in [(0.0, made.SCENES[0][1]), (3.0, made.SCENES[2][1]), (4.6, made.SCENES[3][1])]:
        frame = video.frame_at(data, seconds, size=64)
        assert max(frame.size) == 64
        assert np.abs(np.asarray(frame).reshape(-1, 3).mean(axis=0) - colour).max() < 12
    with pytest.raises(video.VideoError, match="pixels"):
        video.frame_at(data, 1.0, video.VideoLimits(max_pixels=1000))


def test_video_sampling_is_bounded(tmp_path):
    long = made.video(tmp_path / "long.mp4", scenes=((0.0, (90, 90, 90)),), seconds=120, fps=2, size=(64, 48))
    sampled = video.sample(long.read_bytes(), video.VideoLimits(max_frames=5, interval=1.0))
    assert len(sampled.frames) == 5 and sampled.truncated_at is not None
    capped = video.sample(long.read_bytes(), video.VideoLimits(max_seconds=30, interval=10.0))
    assert [t for t, _ in capped.frames] == [0.0, 10.0, 20.0, 30.0] and capped.duration == 30


# -- each format's bombs ------------------------------------------------------------------------

def test_header_sizes_are_read_before_decoding():
    from columnist.models import jxl

    assert jxl.declared_size(made.jxl(PHOTO)) == PHOTO.size
    assert jxl.declared_size(jxl_claiming(100_000, 100_000)) == (100_000, 100_000)


@pytest.mark.parametrize("name, data, reason", [
    ("bomb.jxl", jxl_claiming(100_000, 100_000), "refused before decoding: 100000x100000"),
    ("garbage.jxl", b"\xff\x0a\x00", "cannot read the JPEG XL header"),
    ("bomb.heic", heic_declaring(20_000, 20_000), "refused before decoding"),
    ("thin.heic", heic_declaring(40_000, 1), "cannot decode"),
    ("cut.heic", made.heic(PHOTO)[:3000], "HEIF"),
    ("cut.avif", made.avif(PHOTO)[:1500], "AVIF"),
    ("cut.jxl", made.jxl(PHOTO)[:500], "cannot decode"),
    ("sensor.dng", None, "refused before decoding: a"),
    ("cut.dng", made.dng(PHOTO)[:4000], "camera RAW"),
])
def test_bombs_and_broken_files_of_each_format_are_refused_quickly(name, data, reason):
    if data is None:  # a DNG whose sensor claims 20000 x 20000
        data = dng_claiming(20_000)
    with pytest.raises(ImageError, match=reason):
        decode(data, name, max_pixels=60_000_000, at_least=224)


@pytest.mark.parametrize("make, reason", [
    (lambda p: (lambda d: d[:len(d) // 2])(made.video(p / "x.mp4", seconds=4).read_bytes()), "cut short"),
    (lambda p: b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100, "cannot open the video"),
    (lambda p: made.video(p / "big.avi", seconds=0.2, fps=5, size=(8000, 8000), codec="mjpeg",
                          pix_fmt="yuvj420p").read_bytes(),
     "refused before decoding: 8000x8000|frame size cannot be read"),
    (lambda p: made.video(p / "raw.mkv", seconds=0.2, fps=5, size=(64, 48), codec="rawvideo").read_bytes(),
     "codec 'rawvideo' is not one columnist decodes"),
])
def test_broken_and_hostile_videos_are_refused_with_a_reason(tmp_path, make, reason):
    data = make(tmp_path)
    with pytest.raises(video.VideoError, match=reason):
        video.sample(data, video.VideoLimits(max_pixels=60_000_000))
