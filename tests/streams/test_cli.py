"""The command line as a user runs it: a separate process per command (chdb allows one
database path per process, and this is how people call it)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import PHOTOS, REPO, SPACE_YAML

pytestmark = pytest.mark.integration


def columnist(*args, check=True, stdin=None, env=None):
    result = subprocess.run([sys.executable, "-m", "columnist", *args], cwd=REPO, input=stdin, env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def empty_store(path) -> str:
    """A DSN of a new, empty columnist database (made by another process: chdb opens one path a
    process, and reading commands never create one)."""
    dsn = f"chdb://{path}"
    subprocess.run([sys.executable, "-c", f"from columnist.store import connect; connect({dsn!r}).close()"],
                   check=True, timeout=120)
    return dsn


def count(db, sql):
    out = columnist("query", "--db", db, "--format", "JSONEachRow", sql).stdout
    return int(json.loads(out.splitlines()[0])["n"])  # JSONEachRow quotes 64-bit integers


def test_tag_writes_images_times_attributes_and_is_idempotent(tmp_path, space_vocab):
    db = f"chdb://{tmp_path / 'db'}"
    images = len(list(PHOTOS.glob("*.jpg")))
    expected = images * len(space_vocab.codes)
    result = columnist("tag", str(PHOTOS), "--model", "mock", "--vocab", str(SPACE_YAML), "--db", db)
    assert f"{expected}" in result.stdout
    sql = "SELECT count() AS n FROM columnist.feature_image_attribute FINAL"
    assert count(db, sql) == expected
    columnist("tag", str(PHOTOS), "--model", "mock", "--db", db)
    assert count(db, sql) == expected
    assert count(db, "SELECT count() AS n FROM columnist.images FINAL") == images
    derived = len(space_vocab.derived)
    assert count(db, "SELECT count() AS n FROM columnist.feature_image_attribute FINAL WHERE source = 'derived'") == images * derived

    query = columnist("query", "--db", db, "--format", "CSVWithNames",
                      "SELECT image_id FROM columnist.image_columns WHERE earth > 0.5 ORDER BY image_id")
    lines = [line.strip('"') for line in query.stdout.splitlines()]
    assert lines[0] == "image_id"
    assert set(lines[1:]) <= {p.resolve().as_uri() for p in PHOTOS.glob("*.jpg")}  # ids are file URIs
    table = columnist("query", "--db", db, "SELECT count() FROM columnist.image_columns")
    assert str(images) in table.stdout


def test_query_error_is_reported(tmp_path):
    result = columnist("query", "--db", empty_store(tmp_path / "db"), "SELECT nope FROM columnist.images", check=False)
    assert result.returncode == 1
    assert "query failed" in result.stderr and "nope" in result.stderr


def test_reading_commands_never_create_a_store(tmp_path):
    """`query` or `status` from another folder created an empty store and reported 0 images."""
    nowhere = tmp_path / "nothing-here"
    for command in (["query", "SELECT 1"], ["status"], ["store", "check"], ["gallery", "--attribute", "earth",
                                                                             "--out", str(tmp_path / "g.html")]):
        result = columnist(*command, "--db", f"chdb://{nowhere}", check=False)
        assert_short_failure(result, 3, f"no columnist database at {nowhere}")
    assert not nowhere.exists()
    folder = tmp_path / "a-folder"  # that is not a database: left as it is
    folder.mkdir()
    (folder / "keep").write_text("x")
    for command in (["query", "SELECT 1"], ["search", "moon"], ["status"]):
        assert_short_failure(columnist(*command, "--db", f"chdb://{folder}", check=False), 3, "no columnist database")
    assert [p.name for p in folder.iterdir()] == ["keep"]
    unset = subprocess.run([sys.executable, "-m", "columnist", "tag", str(PHOTOS), "--db", "chdb://"], cwd=folder,
                           capture_output=True, text=True, timeout=300)  # chdb://$UNSET: not the current folder
    assert_short_failure(unset, 2, "names no folder")
    assert [p.name for p in folder.iterdir()] == ["keep"]


def test_tag_of_only_bad_files_fails_naming_them(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    result = columnist("tag", str(bad), "--model", "mock", "--db", f"chdb://{tmp_path / 'db'}", check=False)
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr


HEAVY = ("onnxruntime", "faust", "chdb", "clickhouse_connect", "aiokafka", "torch")
PROBE = """
import sys
from columnist.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print("LOADED", sorted({m.split('.')[0] for m in sys.modules} & set(%r)))
""" % (HEAVY,)


@pytest.mark.parametrize("args", [["--help"], ["vocab", "validate", str(SPACE_YAML)], ["tag", "--help"]])
def test_light_commands_do_not_import_heavy_modules(args):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "LOADED []" in result.stdout, result.stdout + result.stderr


def test_model_info_and_embed(tmp_path):
    import numpy as np

    info = columnist("model", "info", "tiny-clip")
    assert "embedding_dim   512" in info.stdout and "visual.onnx" in info.stdout
    out = tmp_path / "images.npy"
    columnist("model", "embed", "--model", "tiny-clip", "--image", str(PHOTOS / "moon.jpg"),
              "--image", str(PHOTOS / "rocket.jpg"), "--out", str(out))
    vectors = np.load(out)
    assert vectors.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    columnist("model", "embed", "--model", "tiny-clip", "--text", "the Moon", "--out", str(out))
    assert np.load(out).shape == (1, 512)
    bad = columnist("model", "embed", "--image", str(tmp_path / "missing.jpg"), "--out", str(out), check=False)
    assert bad.returncode == 1 and "missing.jpg" in bad.stderr


def test_tag_with_the_default_model_over_good_and_bad_files(tmp_path):
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    db = f"chdb://{tmp_path / 'db'}"
    result = columnist("tag", str(folder), "--db", db)
    assert "zero.jpg: empty file (0 bytes)" in result.stderr
    assert "text.png: not an image" in result.stderr
    good = len(list(PHOTOS.glob("*.jpg")))
    assert count(db, "SELECT count() AS n FROM columnist.image_embedding FINAL WHERE model = 'tiny-clip'") == good
    assert count(db, "SELECT count() AS n FROM columnist.feature_image_attribute FINAL WHERE source = 'clip'") > 0


def test_a_tag_stopped_inside_a_tower_call_for_longer_than_its_deadline_goes_on_when_resumed(tmp_path):
    """A process stopped is not stuck: neither a stop it is not told of (SIGSTOP, a paused
    container) nor Ctrl-Z (SIGTSTP, which the embedded engine used to take for itself, so that
    it did nothing) is counted against the tower call under way; both once ended the run with
    code 6 when it was resumed."""
    import os
    import signal
    import time

    db = f"chdb://{tmp_path / 'db'}"
    env = {**os.environ, "COLUMNIST_FAULTS": "stop:encode:2", "COLUMNIST_ENCODE_TIMEOUT": "8"}
    run = subprocess.Popen([sys.executable, "-m", "columnist", "tag", str(PHOTOS), "--db", db, "--batch-size", "2"],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           process_group=0)  # as a shell's job: a group of its own, the shell beside it

    def stopped() -> bool:
        with open(f"/proc/{run.pid}/status") as status:
            return any(line.startswith("State:") and "T (stopped)" in line for line in status)

    def until_stopped(what: str) -> None:
        deadline = time.monotonic() + 120
        while not stopped():
            assert run.poll() is None and time.monotonic() < deadline, f"it did not stop ({what})"
            time.sleep(0.05)

    try:
        until_stopped("SIGSTOP in its 2nd tower call")
        time.sleep(9)  # the stop itself: longer than the call's 8 s deadline (nothing waits on it)
        run.send_signal(signal.SIGCONT)
        run.send_signal(signal.SIGTSTP)  # Ctrl-Z, as the call goes on
        until_stopped("Ctrl-Z")
        time.sleep(9)
        run.send_signal(signal.SIGCONT)  # fg
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert count(db, "SELECT count() AS n FROM columnist.image_embedding FINAL") == len(list(PHOTOS.glob("*.jpg")))


def test_replay_and_backfill_by_hand(tmp_path, space_vocab):
    import yaml

    db = f"chdb://{tmp_path / 'db'}"
    columnist("tag", str(PHOTOS), "--model", "mock", "--db", db)
    document = yaml.safe_load(SPACE_YAML.read_text())
    document["version"] = 2
    document["attributes"].append({"code": "solar_eclipse", "description": "a solar eclipse"})
    v2 = tmp_path / "space-v2.yaml"
    v2.write_text(yaml.safe_dump(document))
    images = len(list(PHOTOS.glob("*.jpg")))

    replayed = columnist("replay", "--vocab", str(v2), "--model", "mock", "--db", db)
    assert "added ['solar_eclipse']" in replayed.stdout and f"{images} scores of 1 attribute(s)" in replayed.stdout
    assert count(db, "SELECT count() AS n FROM columnist.feature_image_attribute FINAL "
                     "WHERE attribute = 'solar_eclipse'") == images
    assert count(db, "SELECT max(vocab_version) AS n FROM columnist.vocabulary_applied FINAL") == 2

    stamp = "SELECT attribute, max(updated_at) AS t FROM columnist.feature_image_attribute FINAL GROUP BY attribute"
    before = {r["attribute"]: r["t"] for r in map(json.loads, columnist("query", "--db", db, "-f", "JSONEachRow", stamp).stdout.splitlines())}
    filled = columnist("backfill", "--vocab", "space", "--attribute", "moon", "--model", "mock", "--db", db)
    assert "backfilled moon, earth_and_moon, view_from_window" in filled.stdout
    after = {r["attribute"]: r["t"] for r in map(json.loads, columnist("query", "--db", db, "-f", "JSONEachRow", stamp).stdout.splitlines())}
    assert {a for a in after if after[a] != before[a]} == {"moon", "earth_and_moon", "view_from_window"}
    unknown = columnist("backfill", "--vocab", "space", "--attribute", "nope", "--model", "mock", "--db", db, check=False)
    assert unknown.returncode == 2 and "no attribute(s) nope" in unknown.stderr


def assert_short_failure(result, code: int, *named: str) -> None:
    """An expected failure: its exit code, a message of a few lines naming the thing, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr
    for word in named:
        assert word in result.stderr, (word, result.stderr)


def test_expected_failures_are_short_and_name_the_thing(tmp_path):
    from deploy.local import free_port

    nowhere = f"127.0.0.1:{free_port()}"
    db = f"chdb://{tmp_path / 'db'}"
    assert_short_failure(columnist("tag", str(PHOTOS), "--db", f"http://{nowhere}", check=False), 4,
                         "cannot reach ClickHouse")
    assert_short_failure(columnist("tag", str(PHOTOS), "--db", "postgres://x/y", check=False), 2,
                         "postgres://x/y", "is not a ClickHouse DSN")
    assert_short_failure(columnist("tag", str(PHOTOS), "--db", db, "--model", str(tmp_path / "no-model"), check=False),
                         3, "no-model", "not found")
    env = {**__import__("os").environ, "COLUMNIST_KAFKA": nowhere}
    push = columnist("vocab", "push", str(SPACE_YAML), env=env, check=False)
    assert_short_failure(push, 4, f"cannot reach Kafka at {nowhere}: no broker answered")
    assert "Unable connect" not in push.stderr  # the client's own log line: the error says it once
    assert_short_failure(columnist("worker", env={**env, "COLUMNIST_MODEL": str(tmp_path / "no-model")},
                                   check=False), 3, "no-model")
    debug = columnist("--debug", "tag", str(PHOTOS), "--db", "postgres://x/y", check=False)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("args", [("tag", str(PHOTOS), "--collection", "old\udcff"),  # bytes a shell passed
                                  ("search", "moon\udcff"), ("query", "SELECT 'x\udcff'")])
def test_free_text_that_is_not_utf8_is_refused_before_anything_is_made(tmp_path, args):
    db = tmp_path / "db"
    result = columnist(*args, "--db", f"chdb://{db}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "is not valid UTF-8 text" in result.stderr and "\\udcff" in result.stderr, result.stderr
    assert not db.exists()


def test_query_writes_clickhouse_formats_byte_for_byte(tmp_path):
    db = empty_store(tmp_path / "db")
    sql = "SELECT 1 AS a, 'x y' AS b, 0.1 + 0.2 AS c"
    assert columnist("query", "--db", db, sql).stdout == "a\tb\tc\n1\tx y\t0.30000000000000004\n"  # piped: TSV
    assert columnist("query", "--db", db, "--format", "CSVWithNames", sql).stdout == \
        '"a","b","c"\n1,"x y",0.30000000000000004\n'
    assert columnist("query", "--db", db, "-f", "JSONEachRow", sql).stdout == '{"a":1,"b":"x y","c":0.30000000000000004}\n'
    empty = "SELECT image_id FROM columnist.images WHERE 0"
    assert columnist("query", "--db", db, empty).stdout == "image_id\n"  # an empty result keeps its header
    document = json.loads(columnist("query", "--db", db, "--format", "JSON", empty).stdout)  # ClickHouse's JSON
    assert document["rows"] == 0 and document["meta"] == [{"name": "image_id", "type": "String"}]
    unknown = columnist("query", "--db", db, "--format", "Nope", sql, check=False)
    assert_short_failure(unknown, 2, "Unknown format Nope")
    assert unknown.stderr.count("Unknown format") == 1  # the engine's sentence once, not three times
    assert columnist("query", "--db", db, "-", stdin=sql).stdout.startswith("a\tb\tc\n")
    (tmp_path / "report.sql").write_text(sql)
    assert columnist("query", "--db", db, "--file", str(tmp_path / "report.sql")).stdout.startswith("a\tb\tc\n")
    assert_short_failure(columnist("query", "--db", db, check=False), 2, "give a query")


def test_a_querys_own_format_clause_is_its_output_format(tmp_path):
    """As clickhouse-client takes it; it was a syntax error naming TabSeparatedWithNames."""
    db = empty_store(tmp_path / "db")
    assert columnist("query", "--db", db, "SELECT 1 AS a FORMAT JSONEachRow").stdout == '{"a":1}\n'
    assert columnist("query", "--db", db, "SELECT 1 AS a\nformat CSVWithNames ;\n").stdout == '"a"\n1\n'
    assert columnist("query", "--db", db, "SELECT 'x FORMAT JSON' AS a").stdout == "a\nx FORMAT JSON\n"
    assert columnist("query", "--db", db, "SELECT 1 AS a -- FORMAT JSON").stdout == "a\n1\n"  # a comment
    assert columnist("query", "--db", db, "-f", "JSONEachRow", "SELECT 1 AS a FORMAT JSONEachRow").stdout == \
        '{"a":1}\n'
    assert_short_failure(columnist("query", "--db", db, "-f", "CSV", "SELECT 1 FORMAT JSON", check=False), 2,
                         "FORMAT JSON and --format says CSV")
    assert_short_failure(columnist("query", "--db", db, "SELECT 1 FORMAT Nope", check=False), 2, "Unknown format Nope")


def test_a_format_clause_is_found_in_one_pass_over_hostile_whitespace():
    """Two whitespace runs around an optional ';' made the search quadratic: a query of
    5M spaces ran for minutes before this was written as one run stripped at the end."""
    from columnist.cli.query import _own_format

    spaces = " " * 200_000
    assert _own_format("SELECT 1 FORMAT a" + spaces + "b") == ("SELECT 1 FORMAT a" + spaces + "b", None)
    assert _own_format("SELECT 1 FORMAT JSON" + " \t\n" * 100_000 + ";" + spaces) == ("SELECT 1", "JSON")
    assert _own_format("SELECT 1 FORMAT" + spaces + "CSV ;") == ("SELECT 1", "CSV")
    assert _own_format("SELECT 1 # FORMAT JSON") == ("SELECT 1 # FORMAT JSON", None)


def test_kafka_up_refuses_a_port_another_process_holds(tmp_path):
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "KAFKA_DATA": str(tmp_path / "kafka"), "KAFKA_PORT": str(port)}
        result = subprocess.run([str(REPO / "deploy/kafka/kafka.sh"), "up"], env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 1 and f"127.0.0.1:{port} is in use by a process this script did not start" in \
        result.stderr


def test_a_value_too_long_for_the_terminal_switches_to_one_line_a_column_instead_of_being_cut(monkeypatch, capsys):
    from columnist.cli.output import print_rows

    monkeypatch.setenv("COLUMNS", "70")
    uri = "file:///photos/2023/a-rather-long-folder-name/hubble_deep_field.jpg"  # the end is what tells images apart
    print_rows(["rank", "probability", "image"], [[1, 0.5, uri]])
    out = capsys.readouterr().out
    assert uri in out and "Row 1:" in out
    print_rows(["rank", "image"], [[1, "moon.jpg"]])
    assert "Row 1:" not in capsys.readouterr().out  # what fits stays a table


def test_names_from_outside_reach_the_terminal_escaped_and_never_as_markup(monkeypatch, capsys):
    from columnist.cli.output import print_rows, shown, tsv_field
    from columnist.store.search import sql_string

    monkeypatch.setenv("COLUMNS", "200")
    print_rows(["[/]", "image"], [[1, "e\x1b[31mred[bold].jpg"], [2, "two\nlines.jpg"]])
    out = capsys.readouterr().out
    assert "\x1b[31m" not in out and "\\x1b[31mred[bold].jpg" in out and "two\\nlines.jpg" in out and "[/]" in out
    print_rows(["a", "b"], [])
    assert "a  b" in capsys.readouterr().out
    assert tsv_field("a\tb\nc\\d") == "a\\tb\\nc\\\\d"  # as ClickHouse's TabSeparated escapes them
    assert sql_string("it's a \\ quote") == "'it\\'s a \\\\ quote'"
    assert shown("la\xa0Lune 👩\u200d🚀") == "la\xa0Lune 👩\u200d🚀"  # text a terminal shows is left as it is
    assert shown("\u202egpj.exe") == "\\u202egpj.exe"  # a mark that would show it reversed is not


@pytest.mark.parametrize("args, env, named", [
    (("tag", str(PHOTOS), "--batch-size=-1"), {}, "--batch-size"),
    (("tag", str(PHOTOS)), {"COLUMNIST_BATCH_SIZE": "-5"}, "COLUMNIST_BATCH_SIZE=-5"),
    (("search", "moon", "--top=-99999999999999999999"), {}, "--top"),
    (("status",), {"COLUMNIST_DECODE_THREADS": "abc"}, "COLUMNIST_DECODE_THREADS=abc"),
])
def test_a_number_out_of_bounds_in_an_option_or_a_setting_is_a_bad_argument(tmp_path, args, env, named):
    db = tmp_path / "db"
    result = columnist(*args, "--db", f"chdb://{db}", env={**__import__("os").environ, **env}, check=False)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not db.exists()


def test_a_query_that_is_not_one_readable_statement_is_a_bad_argument(tmp_path):
    db = empty_store(tmp_path / "db")
    (tmp_path / "latin1.sql").write_bytes(b"SELECT '\xff'")
    (tmp_path / "good.sql").write_text("SELECT 1")
    cases = [((["-"], bytes(range(256)) * 4), "is not UTF-8 text"), ((["-"], b""), "give a query"),
             ((["-"], b"-- only a comment\n/* and another */ ;"), "give a query"),
             ((["--file", str(tmp_path / "latin1.sql")], b""), "is not UTF-8 text"),
             ((["SELECT 2", "--file", str(tmp_path / "good.sql")], b""), "give the query once"),
             ((["SELECT 10 AS a; SELECT 20 AS b", "--format", "Parquet"], b""), "one statement at a time"),
             ((["SELECT 1 AS a; SELECT '" + "x" * 70_000 + "' AS b", "--format", "JSONEachRow"], b""),
              "one statement at a time"),  # past the worker page's length limit too
             ((["-"], "SELECT '\x00'".encode()), "holds a NUL byte"),
             ((["SELECT 1", "--format", "a b"], b""), "is not a ClickHouse output format name")]
    for (args, stdin), said in cases:
        result = subprocess.run([sys.executable, "-m", "columnist", "query", *args, "--db", db], input=stdin,
                                capture_output=True, timeout=300, cwd=REPO)
        assert result.returncode == 2 and said in result.stderr.decode(), (args, result.stderr)
        assert not result.stdout, args  # nothing half-written (a Parquet file beginning with another result)
    assert columnist("query", "SELECT 10 AS a;", "--format", "JSONEachRow", "--db", db).stdout == '{"a":10}\n'


@pytest.mark.parametrize("template, problem", [("{description} {0}", "unknown placeholder(s) 0"),
                                               ("{description} {", "write a literal brace"),
                                               ("{{description}}", "no {description} placeholder"),
                                               ("{description.__class__}", "unknown placeholder")])
def test_try_checks_its_templates_as_a_vocabularys_are_checked(tmp_path, template, problem):
    result = columnist("try", "the Moon", "--template", template, "--db", f"chdb://{tmp_path / 'db'}", check=False)
    assert result.returncode == 2 and problem in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_path_that_is_a_loop_of_links_is_named_as_one_before_any_database_is_made(tmp_path):
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    db = tmp_path / "db"
    assert_short_failure(columnist("tag", str(tmp_path / "a.jpg"), "--db", f"chdb://{db}", check=False), 3,
                         "a.jpg (a link to nothing, or a loop of links)")
    assert not db.exists()


def test_store_check_repair_ends_in_1_while_what_it_cannot_mend_is_there(tmp_path):
    """An image whose embedding is gone cannot be mended from the store: --repair mends the
    rest and still ends in 1, as a plain check does, until the image is tagged again."""
    db = f"chdb://{tmp_path / 'db'}"
    columnist("tag", str(PHOTOS), "--model", "mock", "--db", db)
    subprocess.run([sys.executable, "-c", "from columnist.store import connect; s = connect(%r); "
                    "s.command(\"DELETE FROM columnist.image_embedding WHERE image_id LIKE '%%moon%%'\")" % db],
                   check=True, timeout=120)
    check = columnist("store", "check", "--db", db, "--model", "mock", check=False)
    repair = columnist("store", "check", "--repair", "--db", db, "--model", "mock", check=False)
    assert (check.returncode, repair.returncode) == (1, 1), repair.stderr
    assert "cannot be mended here" in repair.stdout
    columnist("tag", str(PHOTOS), "--model", "mock", "--db", db)
    assert columnist("store", "check", "--db", db, "--model", "mock", check=False).returncode == 0
