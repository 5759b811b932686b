"""The store against the real ClickHouse engine (chdb)."""

import re

import numpy as np
import pytest

from columnist.models.mock import MockEncoder
from columnist.records import ImageRecord, ModelState, ScoredBatch
from columnist.store.clickhouse import SORT_KEYS, normalise_dsn, render_schema
from columnist.vectors import l2_normalise
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import parse_vocabulary
from columnist.vocab.scoring import score_vocabulary

pytestmark = pytest.mark.integration

VOCAB = """
name: t
version: 1
attributes:
  - {code: earth, description: "the Earth"}
  - {code: moon, description: "the Moon", thresholds: {accept: 0.6}}
derived:
  - {code: both, rule: "earth and moon"}
"""


def make_batch(vocab, count=5, seed=0, images=None):
    encoder = MockEncoder()
    images = images or [ImageRecord(f"img{i}", f"file:///x/img{i}.jpg", "c", 10, 20, "0" * 64) for i in range(count)]
    embeddings = l2_normalise(np.random.default_rng(seed).standard_normal((len(images), encoder.dim)))
    scores = score_vocabulary(embeddings, text_embeddings(encoder, vocab), vocab, encoder.logit_scale, "mock")
    return ScoredBatch.of_images("mock", images, embeddings, [scores])


def counts(store):
    return {t: store.scalar(f"SELECT count() FROM columnist.{t} FINAL")
            for t in ("images", "image_embedding", "feature_image_attribute")}


def test_schema_creation_is_idempotent(store):
    store.create_schema()
    store.create_schema()
    _, rows = store.query("SELECT name FROM system.tables WHERE database = 'columnist' ORDER BY name")
    assert {"images", "image_embedding", "feature_image_attribute", "vocabulary"} <= {r[0] for r in rows}


def test_writes_are_idempotent_under_final(store):
    vocab = parse_vocabulary(VOCAB)
    batch = make_batch(vocab)
    assert store.write(batch) == 5 * 3
    first = counts(store)
    store.write(batch)
    assert counts(store) == first == {"images": 5, "image_embedding": 5, "feature_image_attribute": 15}


def test_embeddings_and_scores_round_trip(store):
    vocab = parse_vocabulary(VOCAB)
    batch = make_batch(vocab)
    store.write(batch)
    _, rows = store.query("SELECT embedding FROM columnist.image_embedding FINAL WHERE image_id = 'img3'")
    np.testing.assert_array_equal(np.array(rows[0][0], np.float32), batch.embeddings[3])
    _, rows = store.query(
        "SELECT score, logit, source FROM columnist.feature_image_attribute FINAL "
        "WHERE attribute = {a:String} AND image_id = 'img1'", {"a": "both"})
    assert rows[0][0] == pytest.approx(float(batch.scores[0].scores["both"][1]))
    assert np.isnan(rows[0][1]) and rows[0][2] == "derived"


def test_apply_vocabulary_builds_column_view_and_tiers(store):
    vocab = parse_vocabulary(VOCAB)
    store.apply_vocabulary(vocab, "mock", default=True)
    batch = make_batch(vocab)
    store.write(batch)
    columns, rows = store.query("SELECT * FROM columnist.image_columns ORDER BY image_id")
    assert columns == ["image_id", "collection", "uri", "ingested_at", "earth", "moon", "both"]
    assert len(rows) == 5
    assert rows[2][5] == pytest.approx(float(batch.scores[0].scores["moon"][2]))
    assert rows[2][:3] == ("img2", "c", "file:///x/img2.jpg")
    assert store.query("SELECT * FROM columnist.columns_t ORDER BY image_id") == (columns, rows)
    _, tiers = store.query("SELECT attribute, image_id, score, tier FROM columnist.image_attribute_tier")
    for attribute, image_id, score, tier in tiers:
        accept = 0.6 if attribute == "moon" else 0.8
        expected = "accepted" if score >= accept else "rejected" if score <= 0.2 else "tentative"
        assert tier == expected, (attribute, image_id, score)
    assert len(tiers) == 15


def test_the_wide_view_shows_each_attribute_s_latest_score_before_any_merge(store):
    """The view picks the row with the latest updated_at, as ReplacingMergeTree's merge will,
    whatever the order the rows arrived in and while both are still stored."""
    vocab = parse_vocabulary(VOCAB)
    store.apply_vocabulary(vocab, "mock", default=True)
    store.write(make_batch(vocab, count=2))
    insert = ("INSERT INTO columnist.feature_image_attribute (attribute, image_id, score, logit, source, model, "
              "vocab_name, vocab_version, updated_at) VALUES ('moon', 'img1', {s:Float32}, 0, 'replay', 'mock', 't', 1, "
              "{at:DateTime64(3, 'UTC')})")
    store.command(insert, {"s": 0.001, "at": "2100-01-01 00:00:02"})  # the newest (and lowest) first
    store.command(insert, {"s": 0.999, "at": "2100-01-01 00:00:01"})
    stored = store.scalar("SELECT count() FROM columnist.feature_image_attribute WHERE image_id = 'img1' "
                          "AND attribute = 'moon'")
    assert stored == 3  # nothing merged yet: the view, not a merge, picks the latest
    _, rows = store.query("SELECT image_id, moon FROM columnist.image_columns ORDER BY image_id")
    assert rows[1] == ("img1", pytest.approx(0.001)) and len(rows) == 2
    store.command("OPTIMIZE TABLE columnist.feature_image_attribute FINAL")
    assert store.query("SELECT image_id, moon FROM columnist.image_columns ORDER BY image_id")[1] == rows


def test_the_parametrised_view_fills_only_the_attributes_named_and_agrees_with_the_wide_one(store):
    vocab = parse_vocabulary(VOCAB)
    store.apply_vocabulary(vocab, "mock", default=True)
    store.write(make_batch(vocab))
    _, wide = store.query("SELECT image_id, moon, earth FROM columnist.columns_t ORDER BY image_id")
    for view in ("some_columns_t", "some_image_columns"):
        columns, rows = store.query(f"SELECT * FROM columnist.{view}(codes = ['moon']) ORDER BY image_id")
        assert columns == ["image_id", "collection", "uri", "ingested_at", "earth", "moon", "both"]
        assert [(r[0], r[5]) for r in rows] == [(i, moon) for i, moon, _ in wide]
        assert all(r[4] is None and r[6] is None for r in rows)  # not named: not read


def test_wide_views_an_older_columnist_made_are_made_again_when_the_store_opens(store):
    vocab = parse_vocabulary(VOCAB)
    store.apply_vocabulary(vocab, "mock", default=True)
    for view in ("columns_t", "image_columns"):  # as an older columnist made them: FINAL, no companion
        store.command(f"DROP VIEW columnist.some_{view}")
        store.command(f"CREATE OR REPLACE VIEW columnist.{view} AS SELECT image_id, maxIfOrNull(score, attribute = "
                      "'earth') AS earth FROM columnist.feature_image_attribute FINAL WHERE vocab_name = 't' "
                      "GROUP BY image_id")
    store.create_schema()
    for view in ("columns_t", "image_columns"):
        definition = store.scalar("SELECT create_table_query FROM system.tables WHERE database = 'columnist' "
                                  "AND name = {v:String}", {"v": view})
        assert "argMaxIfOrNull" in definition and "FINAL" not in definition.split("INNER JOIN")[0]
        assert store.query(f"SELECT * FROM columnist.some_{view}(codes = ['moon']) LIMIT 0")[0][-3:] == \
            ["earth", "moon", "both"]


def test_removed_attribute_leaves_the_view(store):
    vocab = parse_vocabulary(VOCAB)
    store.apply_vocabulary(vocab, "mock")
    smaller = parse_vocabulary(VOCAB.replace("version: 1", "version: 2").replace(
        '  - {code: moon, description: "the Moon", thresholds: {accept: 0.6}}\n', "").replace(
        "earth and moon", "earth"))
    store.apply_vocabulary(smaller, "mock")
    columns, _ = store.query("SELECT * FROM columnist.columns_t LIMIT 0")
    assert columns == ["image_id", "collection", "uri", "ingested_at", "earth", "both"]
    _, current = store.query("SELECT code FROM columnist.vocabulary_current ORDER BY code")
    assert [c for (c,) in current] == ["both", "earth"]


def test_applied_vocabulary_round_trips(store):
    vocab = parse_vocabulary(VOCAB)
    assert store.applied_vocabulary("t") is None
    store.apply_vocabulary(vocab, "mock")
    newer = parse_vocabulary(VOCAB.replace("version: 1", "version: 2"))
    store.apply_vocabulary(newer, "mock")
    assert store.applied_vocabulary("t") == newer


def test_query_parameters_keep_user_text_out_of_sql(store):
    vocab = parse_vocabulary(VOCAB)
    store.write(make_batch(vocab))
    hostile = "earth' OR 1=1 --"
    assert store.scalar("SELECT count() FROM columnist.feature_image_attribute FINAL WHERE attribute = {a:String}",
                        {"a": hostile}) == 0


def test_cluster_ddl_uses_on_cluster_and_replicated_engines():
    statements = render_schema("prod")
    tables = [s for s in statements if s.startswith("CREATE TABLE")]
    assert tables and all("ON CLUSTER `prod`" in s and "ReplicatedReplacingMergeTree" in s for s in tables)
    assert all("ON CLUSTER" not in s and "Replicated" not in s for s in render_schema(None))
    with pytest.raises(ValueError):
        render_schema("x; DROP DATABASE y")


def test_relative_chdb_dsn_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalise_dsn("chdb://./.columnist/db") == f"chdb://{tmp_path}/.columnist/db"
    assert normalise_dsn("chdb:///abs/db") == "chdb:///abs/db"
    assert normalise_dsn("http://localhost:8123") == "http://localhost:8123"


def test_every_statement_against_columnist_tables_lives_in_the_store_package():
    """Outside streams/store, no line of the package holds a statement against columnist.*
    (a command's help text showing an example query is not a statement it runs)."""
    import re

    from tests.conftest import REPO

    statement = re.compile(r"\b(FROM|INTO|JOIN|TABLE|UPDATE|DELETE)\s+columnist\.\w+")  # SQL here is upper-case
    offenders = [f"{path.relative_to(REPO)}:{number}"
                 for folder in ("streams", "models", "vocab") for path in sorted((REPO / folder).rglob("*.py"))
                 if "store" not in path.relative_to(REPO / folder).parts[:1]
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if statement.search(line) and "help=" not in line]
    assert offenders == []


@pytest.mark.parametrize("old_key", ["attribute, image_id", "vocab_name, attribute, image_id",
                                     "vocab_name, model, attribute, image_id"])
def test_a_store_sorted_by_an_older_key_is_migrated(store, old_key):
    """Scores sorted before vocabularies (then models) lived side by side, or by attribute
    before image, and vocabulary rows before models lived side by side, are copied into tables
    with today's keys when the store is opened."""
    for table, key, insert in [
        ("feature_image_attribute", old_key, "(attribute, image_id, score, vocab_name, model) "
                                             "VALUES ('earth', 'a', 0.5, 'space', 'mock')"),
        ("vocabulary", "vocab_name, vocab_version, code", "(vocab_name, vocab_version, code, model) "
                                                          "VALUES ('space', 1, 'earth', 'mock')")]:
        store.client.command(f"DROP TABLE columnist.{table}")
        create = next(s for s in render_schema() if f"columnist.{table} " in s and "CREATE TABLE" in s)
        store.client.command(re.sub(r"ORDER BY \([^)]*\)", f"ORDER BY ({key})", create))
        store.client.command(f"INSERT INTO columnist.{table} {insert}")
    store.client.command("INSERT INTO columnist.image_embedding (model, image_id, embedding) VALUES ('mock', 'a', [1])")
    store.client.command("TRUNCATE TABLE columnist.model_state")
    store.create_schema()
    for table, key in SORT_KEYS.items():
        assert store.scalar("SELECT sorting_key FROM system.tables WHERE database = 'columnist' "
                            "AND name = {t:String}", {"t": table}) == key
    assert store.query("SELECT vocab_name, attribute, image_id, score FROM columnist.feature_image_attribute") == \
        (["vocab_name", "attribute", "image_id", "score"], [("space", "earth", "a", 0.5)])
    assert store.scalar("SELECT count() FROM columnist.vocabulary") == 1
    assert store.model_state() == ModelState("mock", "mock")  # the one model it holds serves


def test_a_schema_in_place_is_not_made_again_and_a_table_dropped_by_hand_is(store, monkeypatch):
    """Opening a store whose schema this columnist made runs no statement (one query looks);
    a view or table dropped by hand, or a digest another version wrote, makes it run them."""
    store.create_schema()
    commands, command = [], store.client.command
    monkeypatch.setattr(store.client, "command", lambda sql, *a, **k: commands.append(sql) or command(sql, *a, **k),
                        raising=False)
    store.create_schema()
    assert commands == []
    command("DROP VIEW columnist.search")
    store.create_schema()
    assert commands and store.scalar("SELECT count() FROM system.tables WHERE database = 'columnist' "
                                     "AND name = 'search'") == 1
    commands.clear()
    command("ALTER TABLE columnist.images MODIFY COMMENT 'columnist schema 0123456789abcdef'")  # another version's
    store.create_schema()
    assert any(sql.startswith("CREATE TABLE IF NOT EXISTS columnist.images") for sql in commands)


def test_on_a_cluster_every_start_runs_the_statements(store, monkeypatch):
    """Each replica needs the tables: a replica added later gets them from the next start."""
    store.create_schema()
    commands = []
    monkeypatch.setattr(store.client, "command", lambda sql, *a, **k: commands.append(sql), raising=False)
    monkeypatch.setattr(store, "cluster", "main")
    store.create_schema()
    assert any(sql.startswith("CREATE TABLE IF NOT EXISTS columnist.images ON CLUSTER `main`") for sql in commands)


def test_each_applied_version_records_how_its_calibration_was_made(store):
    fitted = VOCAB.replace('  - {code: moon, description: "the Moon", thresholds: {accept: 0.6}}',
                           '  - {code: moon, description: "the Moon", thresholds: {accept: 0.6}, '
                           'calibration: {centre: 20, scale: 2, source: "labelled fit: 40 labels"}}')
    store.apply_vocabulary(parse_vocabulary(fitted), "mock")
    _, rows = store.query("SELECT code, calibration_source, model FROM columnist.vocabulary_current ORDER BY code")
    assert rows == [("both", "", "mock"), ("earth", "default", "mock"), ("moon", "labelled fit: 40 labels", "mock")]


def test_scores_written_while_a_migration_copies_them_are_kept(store, monkeypatch):
    """Another process writes while the rows are being copied to the table sorted by today's
    key: after the swap, what it wrote to the old table is copied again."""
    create = next(s for s in render_schema() if "columnist.feature_image_attribute " in s and "CREATE TABLE" in s)
    store.client.command("DROP TABLE columnist.feature_image_attribute")
    store.client.command(re.sub(r"ORDER BY \([^)]*\)", "ORDER BY (vocab_name, model, attribute, image_id)", create))
    store.client.command("INSERT INTO columnist.feature_image_attribute (attribute, image_id, score, vocab_name, model) "
                         "VALUES ('earth', 'before', 0.5, 'space', 'mock')")
    command = store.client.command

    def writes_meanwhile(sql, *args, **kwargs):
        result = command(sql, *args, **kwargs)
        if sql.startswith("INSERT INTO columnist.feature_image_attribute_migrating"):  # the copy has just read
            command("INSERT INTO columnist.feature_image_attribute (attribute, image_id, score, vocab_name, model, "
                    "updated_at) VALUES ('earth', 'meanwhile', 0.7, 'space', 'mock', now64(3))")
        return result
    monkeypatch.setattr(store.client, "command", writes_meanwhile, raising=False)
    store.create_schema()
    _, rows = store.query("SELECT image_id, score FROM columnist.feature_image_attribute FINAL ORDER BY image_id")
    assert rows == [("before", 0.5), ("meanwhile", pytest.approx(0.7))]
    assert store.scalar("SELECT sorting_key FROM system.tables WHERE database = 'columnist' "
                        "AND name = 'feature_image_attribute'") == SORT_KEYS["feature_image_attribute"]


def test_content_look_ups_find_what_is_stored_and_read_by_the_content_index(store):
    """What a batch asks before decoding: which ids are stored with this content (the latest
    version of the images row), and which contents the model has embedded (with their size).
    New content is looked up through the embeddings' bloom filter, not by reading the column."""
    vocab = parse_vocabulary(VOCAB)
    shas = [f"{i:064x}" for i in range(3)]
    batch = make_batch(vocab, images=[ImageRecord(f"img{i}", "file:///x", "c", 10 + i, 20, shas[i]) for i in range(3)])
    store.write(batch)
    store.write(make_batch(vocab, seed=1, images=[ImageRecord("img0", "file:///x", "c", 99, 20, "f" * 64)]))  # replaced

    assert store.stored_content("mock", ["img0", "img1", "new"]) == {"img0": "f" * 64, "img1": shas[1]}
    assert store.stored_content("mock", ["new", "newer"]) == {}
    known = store.known_images("mock", [shas[1], shas[2], "f" * 64, "e" * 64])
    assert {sha: known[sha].width for sha in (shas[1], shas[2], "f" * 64)} == {shas[1]: 11, shas[2]: 12, "f" * 64: 99}
    assert "e" * 64 not in known and store.known_images("other model", [shas[1]]) == {}
    assert np.allclose(known[shas[1]].embedding, batch.embeddings[1])
    _, plan = store.query("EXPLAIN indexes = 1 SELECT image_id FROM columnist.image_embedding "
                          "WHERE model = 'mock' AND sha256 IN ('" + "e" * 64 + "')")
    assert any("sha256_index" in line for (line,) in plan)


def test_embeddings_written_before_the_content_index_get_it_once(store):
    """A store older than the index: its parts are indexed once when it is opened (a mutation),
    and not again at the next opening (a cluster's are checked at every start)."""
    store.command("ALTER TABLE columnist.image_embedding DROP INDEX sha256_index")
    store.write(make_batch(parse_vocabulary(VOCAB)))
    store.command("ALTER TABLE columnist.image_embedding ADD INDEX sha256_index sha256 TYPE bloom_filter(0.001) "
                  "GRANULARITY 1")

    def state():
        _, parts = store.query("SELECT min(secondary_indices_compressed_bytes) FROM system.parts "
                               "WHERE database = 'columnist' AND table = 'image_embedding' AND active AND rows > 0")
        return parts[0][0], store.scalar("SELECT count() FROM system.mutations WHERE database = 'columnist' "
                                         "AND table = 'image_embedding'")

    before = state()
    store._index_older_embeddings()
    indexed = state()
    store._index_older_embeddings()
    assert before[0] == 0 and indexed[0] > 0 and indexed[1] == before[1] + 1 and state() == indexed
