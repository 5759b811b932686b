"""The ONNX CLIP runtime on the committed tiny-clip (no torch needed)."""

import numpy as np
import pytest
from PIL import Image

from columnist.models.encoder import Encoder
from columnist.models.registry import ModelNotFound, builtin_models, load_encoder
from columnist.models.tokenizer import ClipTokenizer
from tests.conftest import PHOTOS


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("tiny-clip", threads=1, batch_size=4)


def load_photos():
    from columnist.models.images import open_image

    return [open_image(p.read_bytes(), p.name) for p in sorted(PHOTOS.glob("*.jpg"))]


def test_registry():
    assert "tiny-clip" in builtin_models()
    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        load_encoder("nope")


def test_tokenizer_matches_known_ids(encoder):
    ids = encoder.text_tower.tokenizer(["a photo of a cat", "x " * 200])
    assert ids.shape == (2, 77) and ids.dtype == np.int64
    assert ids[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 49407]
    assert ids[1, 0] == 49406 and ids[1, -1] == 49407


def test_image_embeddings_are_unit_length_and_batch_independent(encoder):
    assert isinstance(encoder, Encoder) and encoder.dim == 512
    photos = load_photos()
    together = encoder.encode_images(photos)  # batches of 4 then 3
    assert together.shape == (len(photos), 512) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([encoder.encode_images([p]) for p in photos])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in together}) == len(photos)


def test_text_embeddings(encoder):
    texts = ["a photo of the Moon", "a photo of the Earth", "a photo of the Moon"]
    embedded = encoder.encode_texts(texts)
    assert embedded.shape == (3, 512)
    np.testing.assert_array_equal(embedded[0], embedded[2])
    assert not np.allclose(embedded[0], embedded[1])
    assert encoder.encode_texts([]).shape == (0, 512)


def test_preprocessing_shape_and_normalisation(encoder):
    white = Image.new("RGB", (300, 200), "white")
    pixels = encoder.image_tower.pixels([white])
    assert pixels.shape == (1, 3, 224, 224)
    expected = (1 - np.array(encoder.spec.mean)) / np.array(encoder.spec.std)
    np.testing.assert_allclose(pixels[0, :, 100, 100], expected, rtol=1e-5)


def test_small_images_are_upscaled(encoder):
    pixels = encoder.image_tower.pixels([Image.new("RGB", (10, 30), "red")])
    assert pixels.shape == (1, 3, 224, 224)


def test_quantize_writes_an_int8_model(tmp_path):
    from columnist.models.quantize import quantize_model_dir
    from columnist.models.registry import resolve_model_dir

    spec = quantize_model_dir(resolve_model_dir("tiny-clip"), tmp_path / "int8")
    assert spec.dtype == "int8" and spec.name == "tiny-clip-int8"
    int8 = load_encoder(str(tmp_path / "int8"))
    fp32 = load_encoder("tiny-clip")
    photos = load_photos()[:2]
    cos = (int8.encode_images(photos) * fp32.encode_images(photos)).sum(axis=1)
    assert cos.min() > 0.99
    with pytest.raises(ValueError, match="already int8"):
        quantize_model_dir(tmp_path / "int8", tmp_path / "again")


def test_tokenizer_pads_every_text_to_the_context():
    from columnist.models.registry import resolve_model_dir

    tokenizer = ClipTokenizer.from_file(resolve_model_dir("tiny-clip") / "tokenizer.json")
    assert tokenizer([""]).tolist()[0][:3] == [49406, 49407, 49407]


def test_unusual_images_get_correct_embeddings(encoder):
    """CMYK, 16-bit, palette+alpha, animated, multi-page and EXIF-rotated images all embed."""
    from columnist.models.images import open_image
    from tests.models.test_images import encode, photo

    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    palette = photo().convert("P", palette=Image.ADAPTIVE)
    exif = Image.Exif()
    exif[0x0112] = 6
    samples = {
        "cmyk.jpg": encode(photo().convert("CMYK"), "JPEG"),
        "deep.png": encode(Image.fromarray(np.full((40, 60), 40000, np.uint16)), "PNG"),
        "palette.png": encode(palette, "PNG", transparency=0),
        "anim.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "pages.tif": encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "rotated.jpg": encode(photo(), "JPEG", exif=exif.tobytes()),
    }
    images = [open_image(data, name) for name, data in samples.items()]
    embedded = encoder.encode_images(images)
    assert embedded.shape == (len(samples), 512) and np.isfinite(embedded).all()
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, rtol=1e-5)
    rgb = encoder.encode_images([Image.new("RGB", (16, 16), "red")])[0]
    np.testing.assert_allclose(embedded[3], rgb, atol=1e-5)  # the GIF's first frame is plain red


def test_the_image_tower_opened_early_is_opened_once_whoever_asks(monkeypatch):
    import threading

    from columnist.models import clip

    opened, real, entered, release = [], clip.open_session, threading.Event(), threading.Event()

    def slow_open(*args):  # an opening that lasts until the test lets it end
        opened.append(args)
        entered.set()
        release.wait(60)
        return real(*args)
    monkeypatch.setattr(clip, "open_session", slow_open)
    early = load_encoder("tiny-clip", threads=1, batch_size=4)
    first = early.open_image_tower_soon()
    assert entered.wait(60)
    asking = threading.Thread(target=early.open_image_tower_soon)
    asking.start()
    asking.join(10)
    assert not asking.is_alive()  # asked again while it opens: no wait for the opening
    assert early.open_image_tower_soon() is first  # the same opening
    assert first.is_alive()
    release.set()
    tower = early.image_tower  # waits for the opening under way, or opens it first
    assert early.image_tower is tower and len(opened) == 1
    assert early.encode_images([Image.open(PHOTOS / "moon.jpg")]).shape == (1, early.dim)


def test_an_image_tower_that_cannot_open_early_is_named_where_it_is_used(tmp_path, monkeypatch):
    import shutil
    import threading

    from columnist.models.registry import resolve_model_dir
    from columnist.models.sessions import ModelUnreadable

    broken = tmp_path / "broken"
    shutil.copytree(resolve_model_dir("tiny-clip"), broken)
    encoder = load_encoder(str(broken), threads=1, batch_size=4, runtime="onnxruntime")
    (broken / encoder.spec.visual).write_bytes(b"not an onnx model")
    escaped = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)  # what would print a traceback
    encoder.open_image_tower_soon().join()
    assert escaped == []
    with pytest.raises(ModelUnreadable, match="cannot open this model file: .*(?i:protobuf)") as refused:
        encoder.image_tower
    assert refused.value.exit_code == 3  # a bad model, as the README's table of exit codes says


def test_an_unused_text_tower_is_closed_and_opened_again_when_asked(monkeypatch):
    """The idle timer is replaced by one the test fires (a stand-in for threading.Timer), and
    the clock by one it moves: no waiting."""
    import gc

    from columnist.models import clip

    now, timers, opened, real = [1000.0], [], [], clip.open_session

    class ManualTimer:
        def __init__(self, after, function):
            timers.append((after, function))

        def start(self):
            pass

    def counted_open(*args):
        opened.append(args[1].name)
        return real(*args)
    monkeypatch.setattr(clip, "Timer", ManualTimer)
    monkeypatch.setattr(clip, "monotonic", lambda: now[0])
    monkeypatch.setattr(clip, "open_session", counted_open)
    encoder = load_encoder("tiny-clip", threads=1, batch_size=4)
    first = encoder.encode_texts(["a photo of the moon"])
    assert len(opened) == 1 and [after for after, _ in timers] == [encoder.text_idle_s]
    now[0] += encoder.text_idle_s / 2
    encoder.encode_texts(["a nebula"])  # used again halfway: the tower stays open past the first check
    now[0] += encoder.text_idle_s / 2
    timers.pop(0)[1]()
    assert [after for after, _ in timers] == [encoder.text_idle_s / 2]  # checked again when that use turns idle
    encoder.encode_texts(["a galaxy"])
    assert len(opened) == 1
    now[0] += encoder.text_idle_s
    timers.pop(0)[1]()  # idle long enough: closed
    np.testing.assert_array_equal(encoder.encode_texts(["a photo of the moon"]), first)
    assert len(opened) == 2 and len(timers) == 1  # opened again on the next ask, with its own timer

    real_call = clip.TextTower.__call__

    def long_encode(tower, texts, prefix=None):  # lasts two idle times; the idle check fires meanwhile
        now[0] += 2 * encoder.text_idle_s
        timers.pop(0)[1]()
        return real_call(tower, texts, prefix)
    monkeypatch.setattr(clip.TextTower, "__call__", long_encode)
    encoder.encode_texts(["a long list of prompts"])
    assert len(opened) == 2 and [after for after, _ in timers] == [encoder.text_idle_s]  # kept while in use

    del encoder
    gc.collect()
    timers.pop(0)[1]()  # the encoder is gone: its timer neither keeps it alive nor looks again
    assert timers == []


def test_warming_up_runs_one_blank_image_through_the_image_tower(monkeypatch):
    from columnist.models import clip

    fed, real = [], clip.open_session

    class Recording:  # the real session, recording what it is fed
        def __init__(self, session):
            self.session = session

        def __getattr__(self, name):
            return getattr(self.session, name)

        def run(self, outputs, feeds):
            fed.extend(feed.shape for feed in feeds.values())
            return self.session.run(outputs, feeds)
    monkeypatch.setattr(clip, "open_session", lambda *args: Recording(real(*args)))
    encoder = load_encoder("tiny-clip", threads=1, batch_size=4)
    encoder.warm_up()
    assert fed == [(1, 3, encoder.image_size, encoder.image_size)]
