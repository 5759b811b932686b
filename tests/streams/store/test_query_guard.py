"""Which statements the control page runs: ClickHouse's own parser decides what a statement
is; only a SELECT without output files, table functions or file-reading functions passes."""

import pytest

from columnist.store.query_guard import QueryRefused, canonical_select


@pytest.mark.parametrize("sql, refusal", [
    ("SELECT 1 INTO OUTFILE '{out}'", "INTO OUTFILE"),
    ("select 1 into   outfile '{out}' append", "INTO OUTFILE"),
    ("SELECT 1 /* hidden */ INTO OUTFILE '{out}' COMPRESSION 'gzip' LEVEL 3", "INTO OUTFILE"),
    ("SELECT 1; SELECT 1 INTO OUTFILE '{out}'", "not one valid SQL statement"),
    ("KILL QUERY WHERE 1", "only SELECT"),
    ("INSERT INTO columnist.images (image_id) VALUES ('x')", "only SELECT"),
    ("DROP TABLE columnist.images", "only SELECT"),
    ("EXPLAIN SELECT 1", "only SELECT"),
    ("SYSTEM SHUTDOWN", "only SELECT"),
    ("SELECT file('/etc/hostname')", "reads files"),
    ("SELECT length(FILE('/etc/hostname'))", "reads files"),
    ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "table functions"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', 'CSV')", "table functions"),
    ("SELECT * FROM numbers(3)", "table functions"),
    ("SELECT * FROM (SELECT * FROM executable('x.sh', 'CSV', 'a Int8'))", "table functions"),
    ("SELECT 1 FROM columnist.images WHERE image_id IN (SELECT * FROM file('/etc/passwd', 'CSV'))", "table functions"),
    ("SELECT * APPLY file FROM (SELECT '/etc/hostname' AS p)", "APPLY"),
    ("SELECT COLUMNS('p') APPLY(file) FROM (SELECT '/etc/hostname' AS p)", "APPLY"),
    ("SELECT * APPLY(x -> file(x)) FROM (SELECT '/etc/hostname' AS p)", "APPLY"),
    ("this is not SQL", "not one valid SQL statement"),
    ("SELECT 1 SETTINGS readonly = 0", "settings clause"),
    ("SELECT 1 FORMAT TSV", "format clause"),
    ("SELECT '" + "x" * 70_000 + "'", "over the limit"),
])
def test_refused(session_store, tmp_path, sql, refusal):
    out = tmp_path / "written.txt"
    with pytest.raises(QueryRefused, match=refusal):
        canonical_select(session_store.client, sql.replace("{out}", str(out)))
    assert not out.exists()


@pytest.mark.parametrize("sql", [
    "SELECT image_id FROM columnist.images WHERE width > 10 ORDER BY image_id LIMIT 5",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT 1 EXCEPT SELECT 2",
    "SELECT name FROM system.columns WHERE database = 'columnist'",
    "select count() from columnist.feature_image_attribute final where attribute = 'earth' and score > 0.9",
])
def test_allowed(session_store, sql):
    statement = canonical_select(session_store.client, sql)
    session_store.client.query(statement, settings={"readonly": 1})


def test_the_analysed_tree_shows_what_apply_hides(session_store):
    """Second line of defence: EXPLAIN QUERY TREE spells out APPLY's function call."""
    from columnist.store.query_guard import _check_analysed

    lines = [row[0] for row in session_store.client.query(
        "EXPLAIN QUERY TREE SELECT * APPLY file FROM (SELECT '/etc/hostname' AS p)").result_rows]
    with pytest.raises(QueryRefused, match="reads files"):
        _check_analysed(lines)
