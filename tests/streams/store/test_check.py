"""`store check`: what a killed write leaves is found, never shown as data, and mended."""

from __future__ import annotations

import numpy as np

from columnist.models.mock import MockEncoder
from columnist.prompt_cache import PromptCache
from columnist.records import ImageRecord, ScoredBatch
from columnist.store import check
from columnist.vectors import l2_normalise
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import parse_vocabulary
from columnist.vocab.scoring import score_vocabulary

VOCAB = """
name: sky
version: 1
attributes:
  - {code: moon, description: the Moon}
  - {code: sun, description: the Sun}
derived:
  - {code: both, rule: moon and sun}
"""


def write(store, vocab, ids, encoder):
    embeddings = l2_normalise(np.random.default_rng(len(ids)).standard_normal((len(ids), 512)))
    scores = score_vocabulary(embeddings, text_embeddings(encoder, vocab), vocab, encoder.logit_scale, "mock")
    store.write(ScoredBatch.of_images("mock", [ImageRecord(i, f"file:///x/{i}", "", 1, 1, i) for i in ids], embeddings, [scores]))


def test_a_killed_write_is_found_hidden_from_the_views_and_mended(store):
    encoder = MockEncoder()
    vocab = parse_vocabulary(VOCAB)
    store.apply_vocabulary(vocab, "mock", default=True)
    write(store, vocab, ["a", "b", "c"], encoder)
    # a write killed after the embeddings and scores, before the image row: an hour ago
    store.command("INSERT INTO columnist.image_embedding (model, image_id, embedding, created_at, sha256) "
                  "SELECT 'mock', 'killed', embedding, now64(3) - INTERVAL 1 HOUR, 'x' FROM columnist.image_embedding "
                  "WHERE image_id = 'a'")
    store.command("INSERT INTO columnist.feature_image_attribute SELECT attribute, 'killed', score, logit, source, "
                  "model, vocab_name, vocab_version, now64(3) - INTERVAL 1 HOUR FROM columnist.feature_image_attribute "
                  "WHERE image_id = 'a'")
    # another worker's write in progress (seconds old): not an orphan yet
    store.command("INSERT INTO columnist.image_embedding (model, image_id, embedding, created_at, sha256) "
                  "SELECT 'mock', 'in-flight', embedding, now64(3), 'y' FROM columnist.image_embedding WHERE image_id = 'a'")
    # a score lost, and a score of an attribute the vocabulary no longer has
    store.command("DELETE FROM columnist.feature_image_attribute WHERE image_id = 'b' AND attribute = 'sun'")
    store.command("INSERT INTO columnist.feature_image_attribute SELECT 'old_code', image_id, score, logit, source, "
                  "model, vocab_name, vocab_version, updated_at FROM columnist.feature_image_attribute WHERE "
                  "image_id = 'c' AND attribute = 'moon'")

    assert [row[0] for row in store.query("SELECT image_id FROM columnist.image_columns ORDER BY image_id")[1]] == \
        ["a", "b", "c"]  # the views join on the image row: the killed write is not data
    found = check.find(store, "mock", [vocab])
    assert (found.orphan_embeddings, found.orphan_scores, found.images_without_embedding) == (1, 3, 0)
    assert found.examples["orphan embeddings"] == ["killed"]
    assert (found.vocabularies[0].missing, found.vocabularies[0].stale, found.vocabularies[0].removed) == (1, 0, 1)

    replayer = store.replayer("mock", encoder.logit_scale, "mock")
    done = check.mend(store, replayer, [vocab], lambda v: text_embeddings(PromptCache(encoder, store), v), "mock")
    assert done["orphan embeddings deleted"] == 1 and done["sky: images re-scored"] == 1
    assert check.find(store, "mock", [vocab]).clean
    assert store.scalar("SELECT count() FROM columnist.image_embedding FINAL WHERE image_id = 'in-flight'") == 1
    assert store.count_scores("sky", vocab.codes) == 3 * 3


def test_scores_older_than_their_attributes_definition_are_stale(store):
    encoder = MockEncoder()
    v1 = parse_vocabulary(VOCAB)
    store.apply_vocabulary(v1, "mock")
    write(store, v1, ["a", "b"], encoder)
    v2 = parse_vocabulary(VOCAB.replace("version: 1", "version: 2").replace("the Sun", "the Sun at noon"))
    store.apply_vocabulary(v2, "mock")  # recorded as applied, but never replayed: sun and both are stale
    found = check.find(store, "mock", [v2])
    assert found.vocabularies[0].valid_from == {"moon": 1, "sun": 2, "both": 1}
    assert found.vocabularies[0].stale == 2  # 'sun' of a and b ('both' reads sun, but its rule did not change)
    check.mend(store, store.replayer("mock", encoder.logit_scale, "mock"), [v2],
               lambda v: text_embeddings(encoder, v), "mock")
    assert check.find(store, "mock", [v2]).clean
    _, rows = store.query("SELECT DISTINCT vocab_version FROM columnist.feature_image_attribute FINAL "
                          "WHERE attribute = 'sun'")
    assert rows == [(2,)]
