"""The vocabulary workbench on real photos: calibrate (table, fit, YAML, PNG), try and gallery (HTML)."""

import re
import shutil

import pytest
from PIL import Image

from bench import media as made
from tests.conftest import PHOTOS, SPACE_YAML
from tests.streams.test_cli import columnist
from columnist.vocab.schema import load_vocabulary

pytestmark = pytest.mark.integration
NAMES = sorted(f"samples/{p.name}" for p in PHOTOS.glob("*.jpg"))


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """The sample photos (ids samples/NAME) tagged with tiny-clip in one database and with the
    mock encoder in another (a store holds one model's embeddings)."""
    folder = tmp_path_factory.mktemp("workbench")
    dbs = {"tiny-clip": f"chdb://{folder / 'tiny'}", "mock": f"chdb://{folder / 'mock'}"}
    for model, db in dbs.items():
        columnist("tag", str(PHOTOS), "--db", db, "--model", model, "--collection", "samples")
    return dbs


@pytest.fixture(scope="module")
def tagged(databases):
    return databases["mock"]


@pytest.fixture(scope="module")
def tagged_clip(databases):
    return databases["tiny-clip"]


def test_calibrate_prints_statistics_a_suggestion_and_a_picture(tagged, tmp_path):
    png = tmp_path / "calibration.png"
    result = columnist("calibrate", "--db", tagged, "--model", "mock", "--plot", str(png), "--per-attribute")
    assert "accepted" in result.stdout and "earth" in result.stdout
    match = re.search(r"calibration: \{centre: ([\d.]+), scale: ([\d.]+)\}", result.stdout)
    assert match and float(match.group(2)) > 0
    assert "#   porthole: calibration:" in result.stdout
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.width > 500


def test_calibrate_with_labels_and_write(tagged, tmp_path):
    labels = tmp_path / "labels.csv"
    def labelled(name, positives):
        return int(name.removeprefix("samples/") in positives)

    rows = [f"{name},moon,{labelled(name, ('moon.jpg', 'hubble_deep_field.jpg', 'astronaut.jpg'))}" for name in NAMES]
    rows += [f"{name},earth,{labelled(name, ('rocket.jpg', 'astronaut.jpg', 'coffee.jpg'))}" for name in NAMES]
    labels.write_text("image_id,attribute,label\n" + "\n".join(rows) + "\n")
    vocab_file = tmp_path / "space.yaml"
    shutil.copy(SPACE_YAML, vocab_file)
    result = columnist("calibrate", "--db", tagged, "--model", "mock", "--labels", str(labels),
                       "--vocab", str(vocab_file), "--write", check=False)
    if result.returncode:  # seven labels may not rise with the logit: then the refusal says so
        assert "do not rise" in result.stderr
        return
    assert "log-loss before" in result.stdout
    written = vocab_file.read_text()
    assert "# The space-photography vocabulary" in written  # comments kept
    vocab = load_vocabulary(vocab_file)
    assert vocab.entry("moon").calibration.centre is not None
    assert vocab.entry("moon").calibration.source.startswith("labelled fit: 7 labels, log-loss")
    assert vocab.calibration_source(vocab.entry("moon")).startswith("labelled fit")


def test_calibrate_write_vocabulary_wide(tagged, tmp_path):
    vocab_file = tmp_path / "space.yaml"
    shutil.copy(SPACE_YAML, vocab_file)
    columnist("calibrate", "--db", tagged, "--model", "mock", "--vocab", str(vocab_file), "--write")
    before, after = load_vocabulary(SPACE_YAML), load_vocabulary(vocab_file)
    assert after.calibration != before.calibration
    assert after.calibration.source == "unlabelled fit: two-Gaussian mixture over 7 images"
    assert after.codes == before.codes
    changed = [(a, b) for a, b in zip(SPACE_YAML.read_text().splitlines(), vocab_file.read_text().splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("calibration: {centre: ")  # comments and layout kept


def test_try_and_gallery_write_pages_of_the_expected_images(tagged_clip, tmp_path):
    tagged = tagged_clip
    page = tmp_path / "try.html"
    result = columnist("try", "a photo of the Moon", "--db", tagged, "--top", "7", "--html", str(page))
    lines = [line.split("\t") for line in result.stdout.splitlines()]  # piped: one TSV, the heading on stderr
    assert lines[0] == ["list", "image_id", "score", "logit"] and "over 7 stored embeddings" in result.stderr
    assert [row[0] for row in lines[1:]] == ["top"] * 7 + ["borderline"] * 7
    assert {row[1] for row in lines[1:]} == set(NAMES) and all(0 <= float(row[2]) <= 1 for row in lines[1:])
    listed = set(re.findall(r'data-image-id="([^"]+)"', page.read_text()))
    assert listed == set(NAMES)
    assert page.read_text().count("data:image/jpeg;base64,") >= 7
    assert "<dt>model</dt><dd>tiny-clip</dd>" in page.read_text() and "<dt>vocabulary</dt><dd>space v1</dd>" in \
        page.read_text()
    assert re.search(r"score \d\.\d{4} ", page.read_text()) and "<a href=\"file:///" in page.read_text()

    gallery = tmp_path / "gallery.html"
    columnist("gallery", "--attribute", "moon", "--out", str(gallery), "--db", tagged)
    text = gallery.read_text()
    assert "<dt>thresholds</dt><dd>accept ≥ " in text
    assert set(re.findall(r'data-image-id="([^"]+)"', text)) == set(NAMES)
    assert "accepted (score" in text and "rejected (score" in text
    shown = re.findall(r"showing (\d+) of (\d+)", text)
    assert len(shown) == 3 and sum(int(total) for _, total in shown) == len(NAMES)
    assert '<html lang="en">' in text and 'name="viewport"' in text
    assert "<figcaption>astronaut.jpg<br>" in text

    found = tmp_path / "search.html"
    result = columnist("search", "the Moon", "--db", tagged, "--top", "3", "--html", str(found))
    assert result.stdout.splitlines()[0].split("\t") == ["rank", "image_id", "probability", "logit", "uri"]
    assert len(result.stdout.splitlines()) == 4 and "showing 3 of 7" in found.read_text()


def test_pages_name_files_as_people_do_and_show_video_frames(tmp_path):
    from columnist.workbench.gallery import Scored, Section, caption, write_html

    clip = made.video(tmp_path / "launch day.mp4")
    photo = tmp_path / "100% moon.jpg"
    shutil.copy(PHOTOS / "moon.jpg", photo)
    uris = {"v#t=2.000": clip.as_uri(), "p": photo.as_uri(), "gone": (tmp_path / "gone.jpg").as_uri()}
    assert caption("v#t=2.000", uris["v#t=2.000"]) == "launch day.mp4 at 2.0 s"
    assert caption("p", uris["p"]) == "100% moon.jpg" and caption("http-only", "") == "http-only"
    page = tmp_path / "page.html"
    write_html(page, "a <title>", [Section("top", [Scored(i, 0.5, 1.0) for i in uris], 10)], uris)
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") == 2 and "no preview" in text  # the frame and the photo
    assert f'href="{clip.as_uri()}#t=2.000"' in text and "showing 3 of 10" in text
    assert "a &lt;title&gt;" in text and "<title>a <title>" not in text


def test_gallery_of_an_unknown_attribute_fails_clearly(tagged, tmp_path):
    result = columnist("gallery", "--attribute", "nope", "--out", str(tmp_path / "g.html"), "--db", tagged, check=False)
    assert result.returncode == 2 and "no attribute 'nope'" in result.stderr


def test_search_ranks_in_the_engine_and_sql_ranks_by_the_phrase_afterwards(store, space_vocab):
    """`columnist search`: the phrase's ensemble against every stored embedding, a calibrated
    probability; the same ranking from SQL once searched, and through a worker's guarded page."""
    import numpy as np

    from columnist.models.mock import MockEncoder
    from columnist.store import QueryLimits
    from columnist.tagger import find_images, tag
    from columnist.vocab.scoring import clip_logits, sigmoid
    from columnist.store.search import inline_ranking, search_sql
    from columnist.workbench.search import encode_phrase

    encoder = MockEncoder()
    tag(find_images([PHOTOS]), space_vocab, encoder, store)
    phrase = encode_phrase("a rocket  on the pad", encoder, encoder, space_vocab)
    store.save_search_phrase(encoder.name, phrase.text, phrase.embedding, phrase.logit_scale, phrase.centre,
                             phrase.scale)
    _, rows = store.query(search_sql(3), {"phrase": "a rocket on the pad"})
    ids, embeddings = store.read_embeddings("mock")
    expected = sigmoid(clip_logits(embeddings, phrase.embedding, 100.0), phrase.centre, phrase.scale)
    best = [ids[i] for i in np.argsort(-expected)[:3]]
    assert [r[0] for r in rows] == best and rows[0][1] == pytest.approx(float(expected.max()), abs=1e-5)
    assert all(r[3].startswith("file:///") for r in rows)
    guarded = store.select(search_sql(3, inline_ranking(phrase.embedding, phrase.logit_scale, phrase.centre, phrase.scale, "mock")), QueryLimits())
    assert [r[0] for r in guarded[1]] == best  # what a worker's read-only page answers
    viewed = store.select("SELECT image_id FROM columnist.search(phrase = 'a rocket on the pad') "
                          "ORDER BY probability DESC LIMIT 3", QueryLimits())
    assert [r[0] for r in viewed[1]] == best
