"""Which statements the control page runs: ClickHouse's own parser decides what a statement
is; only a SELECT of columnist's own tables, without output files, table functions or
functions about files, the host or the server, passes (and SHOW TABLES / DESCRIBE of columnist's)."""

import pytest

from columnist.store import QueryLimits
from columnist.store.query_guard import QueryRefused, guarded_statement
from tests.hostile import QUERY_PROBES


@pytest.mark.parametrize("sql, refusal", QUERY_PROBES)
def test_refused(session_store, tmp_path, sql, refusal):
    out = tmp_path / "written.txt"
    with pytest.raises(QueryRefused, match=refusal):
        guarded_statement(session_store.client, sql.replace("{out}", str(out)), 100)
    assert not out.exists()


@pytest.mark.parametrize("sql", [
    "SELECT image_id FROM columnist.images WHERE width > 10 ORDER BY image_id LIMIT 5",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT 1 EXCEPT SELECT 2",
    "select count() from columnist.feature_image_attribute final where attribute = 'earth' and score > 0.9",
    "SHOW TABLES",
    "show tables from columnist",
    "DESCRIBE columnist.images",
    "desc table columnist.feature_image_attribute",
])
def test_allowed(session_store, sql):
    statement = guarded_statement(session_store.client, sql, 100)
    session_store.client.query(statement, settings={"readonly": 1})


def test_a_single_block_is_held_to_the_limits_too(store):
    """The engine checks its result limits between blocks: one block of 5,000 rows (or one
    row of a 7 MB array) passed unchecked until the statement was wrapped."""
    limits = QueryLimits(seconds=30, rows=1_000, bytes=100_000)
    for sql, words in (("SELECT arrayJoin(range(5000)) AS n", "max rows"),
                       ("SELECT range(1000000) AS r", "max bytes")):
        with pytest.raises(Exception, match=words):
            store.select(sql, limits)
        with pytest.raises(Exception, match=words):
            store.select(sql, limits, "TSV")
    assert store.select("SELECT arrayJoin(range(1000)) AS n", limits)[1][-1] == (999,)


def test_a_failed_query_never_leaves_its_bytes_for_the_next(store):
    """A query that fails mid-stream (the time limit) leaves the next query a clean connection."""
    store.client.command("INSERT INTO columnist.images (image_id) SELECT toString(number) FROM numbers(40)")
    slow = QueryLimits(seconds=0.5, rows=1_000, bytes=10_000_000)
    for _ in range(3):
        with pytest.raises(Exception):
            store.select("SELECT sleepEachRow(0.1), image_id FROM columnist.images", slow)
        assert store.select("SELECT 'hello' AS greeting", slow) == (["greeting"], [("hello",)])
        assert store.select("SELECT 'hello' AS greeting", slow, "TSV") == b"hello\n"


def test_the_analysed_tree_shows_what_apply_hides(session_store):
    """Second line of defence: EXPLAIN QUERY TREE spells out APPLY's function call."""
    from columnist.store.query_guard import _check_analysed

    lines = [row[0] for row in session_store.client.query(
        "EXPLAIN QUERY TREE SELECT * APPLY file FROM (SELECT '/etc/hostname' AS p)").result_rows]
    with pytest.raises(QueryRefused, match="reads files"):
        _check_analysed(lines, {"file"})


def test_clause_words_inside_strings_are_only_strings(session_store):
    """`SELECT 'x SETTINGS y'` was refused: the clauses are found in the syntax tree now."""
    statement = guarded_statement(session_store.client, "SELECT 'x SETTINGS y FORMAT z INTO OUTFILE' AS s", 10)
    assert session_store.client.query(statement, settings={"readonly": 1}).result_rows == [("x SETTINGS y FORMAT z INTO OUTFILE",)]
