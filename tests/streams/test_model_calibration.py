"""A model with a learned logit bias (SigLIP) scores sigmoid(logit + bias), on ingest and in replays,
whatever CLIP-era calibration the vocabulary carries; attributes that set their own keep it."""

import numpy as np
import pytest

from columnist.models.clip import ClipEncoder
from columnist.models.layouts import convert
from columnist.tagger import find_images, tag
from columnist.vocabulary_change import apply_vocabulary
from columnist.vocab.schema import vocabulary_from_dict
from tests.conftest import PHOTOS
from tests.models import layouts

pytestmark = pytest.mark.integration
BIAS = -3.5


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    root = tmp_path_factory.mktemp("siglip")
    convert(layouts.immich_siglip(root / "src"), root / "model", "test/siglip", logit_scale=20.0, logit_bias=BIAS)
    return ClipEncoder.from_directory(root / "model")


def vocabulary(version: int, extra: list[dict] | None = None):
    return vocabulary_from_dict({"name": "sig", "version": version, "calibration": {"centre": 25.0, "scale": 2.5},
                                 "attributes": [{"code": "moon", "description": "the moon"},
                                                {"code": "own", "description": "a cat", "calibration": {"centre": 1.0}},
                                                *(extra or [])]})


def scores(store, code):
    _, rows = store.query("SELECT score, logit FROM columnist.feature_image_attribute FINAL "
                          "WHERE vocab_name = 'sig' AND attribute = {c:String}", {"c": code})
    return np.array(rows, dtype=np.float64)


def test_native_sigmoid_on_ingest_in_replays_and_in_the_record(store, siglip):
    tag(find_images([PHOTOS]), vocabulary(1), siglip, store)
    moon = scores(store, "moon")
    assert len(moon) == 7
    np.testing.assert_allclose(moon[:, 0], 1 / (1 + np.exp(-(moon[:, 1] + BIAS))), atol=1e-6)
    own = scores(store, "own")  # its own centre, the model's scale
    np.testing.assert_allclose(own[:, 0], 1 / (1 + np.exp(-(own[:, 1] - 1.0))), atol=1e-6)

    apply_vocabulary(store, siglip, vocabulary(1), vocabulary(2, [{"code": "astronaut", "description": "an astronaut"}]),
                     chunks=0)
    replayed = scores(store, "astronaut")
    assert len(replayed) == 7
    np.testing.assert_allclose(replayed[:, 0], 1 / (1 + np.exp(-(replayed[:, 1] + BIAS))), atol=1e-5)

    _, rows = store.query("SELECT code, centre, scale, calibration_source FROM columnist.vocabulary "
                          "WHERE vocab_name = 'sig' AND vocab_version = 2 ORDER BY code")
    recorded = {code: (centre, scale, source) for code, centre, scale, source in rows}
    assert recorded["moon"][:2] == (-BIAS, 1.0) and "logit bias -3.5" in recorded["moon"][2]
    assert recorded["own"][:2] == (1.0, 1.0)


def test_an_attribute_setting_the_vocabulary_wide_centre_is_a_change_under_a_biased_model(siglip):
    from columnist.vocab.diff import diff_vocabularies

    old = vocabulary(1)
    new = vocabulary_from_dict({**old.model_dump(mode="json"), "version": 2, "attributes": [
        {"code": "moon", "description": "the moon", "calibration": {"centre": 25.0}},
        {"code": "own", "description": "a cat", "calibration": {"centre": 1.0}}]})
    assert diff_vocabularies(old, new).changed == ()  # the vocabulary-wide centre is 25 already
    assert "moon" in diff_vocabularies(old, new, siglip.calibration).changed  # but the model's was 3.5


def test_backfill_scores_with_the_models_calibration(tmp_path, siglip):
    """Through the CLI, in processes of their own (one embedded database per process)."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    def columnist(*args) -> str:
        result = subprocess.run([sys.executable, "-m", "columnist", *args, "--db", f"chdb://{tmp_path / 'db'}"],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    vocab_file = tmp_path / "sig.yaml"
    vocab_file.write_text(vocabulary(1).model_dump_json())
    columnist("tag", str(PHOTOS), "--vocab", str(vocab_file), "--model", str(siglip.directory))
    columnist("backfill", "--vocab", "sig", "--model", str(siglip.directory))
    out = columnist("query", "--format", "JSONEachRow", "SELECT score, logit FROM columnist.feature_image_attribute "
                    "FINAL WHERE vocab_name = 'sig' AND attribute = 'moon' AND source = 'clip'")
    moon = np.array([[row["score"], row["logit"]] for row in map(json.loads, out.splitlines())], dtype=np.float64)
    assert len(moon) == 7
    np.testing.assert_allclose(moon[:, 0], 1 / (1 + np.exp(-(moon[:, 1] + BIAS))), atol=1e-5)
