"""Replay inside the real ClickHouse engine: SQL scores equal the numpy scoring path."""

import numpy as np
import pytest

from columnist.models.mock import MockEncoder
from columnist.store.replay import Replayer
from columnist.records import ImageRecord, ScoredBatch
from columnist.vocab.diff import VocabularyDiff, diff_vocabularies
from columnist.vectors import l2_normalise
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import parse_vocabulary
from columnist.vocab.scoring import score_vocabulary

pytestmark = pytest.mark.integration

V1 = """
name: t
version: 1
attributes:
  - {code: earth, description: "the Earth"}
  - {code: moon, description: "the Moon", calibration: {centre: 20, scale: 4}}
derived:
  - {code: both, rule: "earth and moon"}
"""
V2 = V1.replace("version: 1", "version: 2").replace(
    "derived:", '  - {code: porthole, description: "a porthole"}\nderived:') + \
    '  - {code: window_view, rule: "porthole and not (earth or moon)"}\n'


def ingest(store, vocab, count=200, seed=0, prefix="img"):
    encoder = MockEncoder()
    embeddings = l2_normalise(np.random.default_rng(seed).standard_normal((count, encoder.dim)) + 3 * np.eye(1, encoder.dim))
    images = [ImageRecord(f"{prefix}{i}", "file:///x", "", 1, 1, "") for i in range(count)]
    scores = score_vocabulary(embeddings, text_embeddings(encoder, vocab), vocab, encoder.logit_scale, "mock")
    store.write(ScoredBatch.of_images("mock", images, embeddings, [scores]))
    return embeddings


def scores_of(store, code):
    _, rows = store.query("SELECT image_id, score, updated_at FROM columnist.feature_image_attribute FINAL "
                          "WHERE attribute = {a:String} ORDER BY image_id", {"a": code})
    return {r[0]: (r[1], r[2]) for r in rows}


def test_replay_adds_only_new_attributes_and_matches_numpy(store):
    v1, v2 = parse_vocabulary(V1), parse_vocabulary(V2)
    store.apply_vocabulary(v1, "mock")
    embeddings = ingest(store, v1)
    before = {c: scores_of(store, c) for c in v1.codes}
    diff = diff_vocabularies(v1, v2)
    assert diff.rescore == ("porthole", "window_view")
    encoder = MockEncoder()
    texts = text_embeddings(encoder, v2, diff.rescore)
    report = Replayer(store, "mock", encoder.logit_scale, "mock", chunks=4, clock_slack_ms=0).run(v2, diff, texts)
    assert report.score_rows == 2 * 200 and report.late_score_rows == 0
    for code in v1.codes:  # untouched: same rows, same updated_at
        assert scores_of(store, code) == before[code]
    expected = score_vocabulary(embeddings, text_embeddings(encoder, v2), v2, encoder.logit_scale)
    for code in ("porthole", "window_view"):
        got = scores_of(store, code)
        assert len(got) == 200
        values = np.array([got[f"img{i}"][0] for i in range(200)])
        np.testing.assert_allclose(values, expected.scores[code], atol=2e-6)


def test_replay_resumes_from_checkpoints_and_catches_late_images(store):
    v1, v2 = parse_vocabulary(V1), parse_vocabulary(V2)
    ingest(store, v1)
    diff = diff_vocabularies(v1, v2)
    encoder = MockEncoder()
    texts = text_embeddings(encoder, v2, diff.rescore)
    replayer = Replayer(store, "mock", encoder.logit_scale, "mock", chunks=4, clock_slack_ms=0)
    replayer.replay_chunk(v2, diff, texts, 0)  # as if the worker died after two chunks...
    replayer.replay_chunk(v2, diff, texts, 1)
    ingest(store, v1, count=30, seed=1, prefix="late")  # ...and images arrived meanwhile
    report = replayer.run(v2, diff, texts)
    assert report.chunks_skipped == 2
    assert report.late_score_rows == 30 * 2  # the final pass scores the late images
    assert len(scores_of(store, "porthole")) == 230 and len(scores_of(store, "window_view")) == 230
    _, done = store.query("SELECT count() FROM columnist.replay_checkpoint FINAL WHERE job = {j:String}",
                          {"j": v2.content_hash()})
    assert done == [(4,)]


def test_chunk_count_follows_the_number_of_embeddings(store):
    v1 = parse_vocabulary(V1)
    ingest(store, v1, count=10)
    assert Replayer(store, "mock", 100.0, "mock").chunks == 1
    Replayer.SCORES_PER_CHUNK, saved = 3, Replayer.SCORES_PER_CHUNK
    try:
        replayer = Replayer(store, "mock", 100.0, "mock")
        assert replayer.chunks == 4  # one attribute: 10 score rows
        replayer.size_for(VocabularyDiff(added=("a", "b", "c")))
        assert replayer.chunks == 10  # 30 score rows
        given = Replayer(store, "mock", 100.0, "mock", chunks=2)
        given.size_for(VocabularyDiff(added=("a", "b", "c")))
        assert given.chunks == 2  # COLUMNIST_REPLAY_CHUNKS holds
    finally:
        Replayer.SCORES_PER_CHUNK = saved


def test_changed_description_rescores_it_and_dependents_only(store):
    v1 = parse_vocabulary(V1)
    changed = parse_vocabulary(V1.replace("version: 1", "version: 2").replace('"the Moon"', '"the full Moon"'))
    ingest(store, v1)
    before = {c: scores_of(store, c) for c in v1.codes}
    diff = diff_vocabularies(v1, changed)
    assert diff.rescore == ("moon", "both")
    encoder = MockEncoder()
    Replayer(store, "mock", encoder.logit_scale, "mock", chunks=2, clock_slack_ms=0).run(changed, diff, text_embeddings(encoder, changed, diff.rescore))
    assert scores_of(store, "earth") == before["earth"]
    assert all(scores_of(store, "moon")[k][1] > before["moon"][k][1] for k in before["moon"])
    assert scores_of(store, "moon") != before["moon"]


def test_removed_attribute_rows_are_deleted(store):
    v1 = parse_vocabulary(V1)
    smaller = parse_vocabulary(V1.replace("version: 1", "version: 2").replace(
        "derived:\n  - {code: both, rule: \"earth and moon\"}\n", ""))
    ingest(store, v1, count=20)
    diff = diff_vocabularies(v1, smaller)
    assert diff.removed == ("both",)
    Replayer(store, "mock", 100.0, "mock", chunks=2, clock_slack_ms=0).run(smaller, diff, {})
    assert scores_of(store, "both") == {}
    assert len(scores_of(store, "earth")) == 20


def test_derived_attributes_of_two_levels_read_the_latest_scores(store):
    """A changed rule and a rule reading it are replayed in one job: the second reads the
    first's new values (written by the statement before), and every rule reads each
    reference's latest score, not an older row the table has not merged away yet."""
    v1 = parse_vocabulary(V2)
    v2 = parse_vocabulary(V2.replace("version: 2", "version: 3").replace('rule: "earth and moon"', 'rule: "earth or moon"')
                          + '  - {code: lookout, rule: "porthole and not both"}\n')
    ingest(store, v1, count=40)
    store.client.command("INSERT INTO columnist.feature_image_attribute (attribute, image_id, score, model, vocab_name, "
                         "vocab_version, updated_at) VALUES ('earth', 'img0', 0.001, 'mock', 't', 2, now64(3) + 60), "
                         "('moon', 'img0', 0.002, 'mock', 't', 2, now64(3) + 60)")  # newer and lower: not the highest
    diff = diff_vocabularies(v1, v2)
    assert set(diff.rescore) == {"both", "lookout"}
    Replayer(store, "mock", 100.0, "mock", chunks=2, clock_slack_ms=0).run(v2, diff, {})
    latest = {c: {k: v[0] for k, v in scores_of(store, c).items()} for c in ("earth", "moon", "porthole")}
    assert (latest["earth"]["img0"], latest["moon"]["img0"]) == (pytest.approx(0.001), pytest.approx(0.002))
    for image in (f"img{i}" for i in range(40)):
        both = max(latest["earth"][image], latest["moon"][image])
        assert scores_of(store, "both")[image][0] == pytest.approx(both)
        assert scores_of(store, "lookout")[image][0] == pytest.approx(min(latest["porthole"][image], 1 - both))


def test_a_level_of_the_most_and_longest_rules_is_written_in_statements_clickhouse_accepts(store):
    """500 rules (the limit) of nearly 1,000 characters, all of one level: one statement would
    be 5 MB of SQL, over ClickHouse's max_query_size (256 KiB), and the replay failed."""
    codes = [f"a{i}" for i in range(20)]
    rule = " or ".join(f"({a} and not {b})" for a, b in zip(codes, codes[1:]))
    text = "name: t\nversion: 1\nattributes:\n" + "".join(f'  - {{code: {c}, description: "{c}"}}\n' for c in codes)
    v1 = parse_vocabulary(text)
    v2 = parse_vocabulary(text.replace("version: 1", "version: 2") + "derived:\n"
                          + "".join(f'  - {{code: d{i}, rule: "{rule}"}}\n' for i in range(500)))
    embeddings = ingest(store, v1, count=10)
    Replayer(store, "mock", MockEncoder().logit_scale, "mock", chunks=1, clock_slack_ms=0).run(
        v2, diff_vocabularies(v1, v2), {})
    expected = score_vocabulary(embeddings, text_embeddings(MockEncoder(), v2), v2, MockEncoder().logit_scale)
    assert store.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL WHERE startsWith(attribute, 'd')") \
        == 500 * 10
    got = scores_of(store, "d499")
    np.testing.assert_allclose([got[f"img{i}"][0] for i in range(10)], expected.scores["d499"], atol=2e-6)
