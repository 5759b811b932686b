"""`columnist query`: SQL against the store, directly or through the worker that owns it.

On a terminal the result is a table (vertical when it is wide, cli.output); piped, it is
ClickHouse's TabSeparatedWithNames (a header line, then one line per row, full precision),
so `columnist query … | sort` works. `--format` takes a ClickHouse output format by its own
name (CSVWithNames, JSONEachRow, JSON, Parquet…; names are case-sensitive, as ClickHouse's
are) and writes exactly what ClickHouse writes; `--format table` is the terminal's table.
A query that ends in its own ``FORMAT Name`` (as clickhouse-client takes it) is written in
that format: the clause is taken off and used as ``--format`` (both, and different: refused).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

import typer

from columnist.cli.common import DbOption, fail, settings, utf8_text
from columnist.printable import printable

TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9]*)\Z", re.IGNORECASE)
"""A query's own FORMAT clause, last in the statement (a name in a string or a comment
there is not matched: it would end in a quote, or sit after ``--`` or ``#`` on its line)."""


def query(
    sql: Optional[str] = typer.Argument(None, help="A SQL query, e.g. \"SELECT image_id FROM columnist.image_columns "
                                                   "WHERE earth > 0.9\"; '-' reads it from standard input.",
                                    callback=utf8_text),
    file: Optional[Path] = typer.Option(None, "--file", help="Read the query from this file."),
    db: Optional[str] = DbOption,
    format: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT",
                                         help="'table', or a ClickHouse output format by its name (CSVWithNames, "
                                              "JSONEachRow, JSON, Parquet, …). Default: a table on a terminal, "
                                              "TabSeparatedWithNames when piped."),
) -> None:
    """Run a SQL query and print the result (through the worker while it owns an embedded database)."""
    from columnist.cli.errors import USAGE
    from columnist.cli.reader import QueryFailed, Reader
    from columnist.store.clickhouse import check_format, engine_message

    text, named = _own_format(_read_sql(sql, file))
    if named and format and named != format:
        fail(f"the query ends in FORMAT {named} and --format says {format}: give one of them", USAGE)
    fmt = format or named or ("table" if sys.stdout.isatty() else "TabSeparatedWithNames")
    if fmt != "table":
        check_format(fmt)  # a name that cannot be a format's is a bad argument, before any database is opened
    reader = Reader(db or settings().db, settings())
    try:
        _one_statement(reader, text)
        if fmt == "table":
            from columnist.cli.output import print_rows

            print_rows(*reader.query(text))
        else:
            sys.stdout.buffer.write(reader.query_raw(text, fmt))
            sys.stdout.flush()
    except (QueryFailed, ConnectionError, ValueError) as err:
        message = engine_message(err)
        fail(f"query failed: {message}", USAGE if "UNKNOWN_FORMAT" in str(err) or "SYNTAX_ERROR" in str(err) else 1)
    finally:
        reader.close()


def _own_format(text: str) -> tuple[str, str | None]:
    """The query without its trailing FORMAT clause, and the format it named (None: none).
    ClickHouse's clients append their own clause, so one left in the query was a syntax
    error that named the format columnist asked for, not the user's."""
    match = TRAILING_FORMAT.search(text.rstrip().removesuffix(";").rstrip())  # linear: one \s run at each end
    if not match:
        return text, None
    line = text[text.rfind("\n", 0, match.start()) + 1:match.start()]
    if "--" in line or "#" in line:
        return text, None
    return text[:match.start()].rstrip(), match.group(1)


MAX_QUERY_BYTES = 16_000_000
"""A query read from a file or standard input: at most this many bytes."""


def _read_sql(sql: str | None, file: Path | None) -> str:
    """The query's text, from the argument, '-' (standard input) or --file: refused (exit 2)
    when given twice, empty, not UTF-8 text, or holding a NUL byte."""
    from columnist.files import read_regular_file

    if file is not None and sql is not None:
        fail("give the query once: an argument, '-', or --file FILE", 2)
    where = "the argument"
    if file is not None:
        where = str(file)
        try:
            data = read_regular_file(file, MAX_QUERY_BYTES)
        except OSError as err:
            fail(f"cannot read the query from {file}: {getattr(err, 'reason', None) or err.strerror or err}", 2)
    elif sql == "-":
        where, data = "standard input", sys.stdin.buffer.read(MAX_QUERY_BYTES + 1)
        if len(data) > MAX_QUERY_BYTES:
            fail(f"the query on standard input is over {MAX_QUERY_BYTES:,} bytes", 2)
    else:
        data = (sql or "").encode()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"the query from {printable(where)} is not UTF-8 text", 2)
    if "\x00" in text:
        fail(f"the query from {printable(where)} holds a NUL byte", 2)
    if not COMMENTS.sub("", text).strip(" \t\r\n;"):
        fail("give a query: an argument, '-' for standard input, or --file FILE", 2)
    return text


COMMENTS = re.compile(r"--[^\n]*|#[^\n]*|/\*.*?\*/", re.DOTALL)
"""SQL comments, to tell a query that says nothing (only comments) from one that does."""


def _one_statement(reader, text: str) -> None:
    """Several statements would each write their own result, the last alone in the format asked
    for (a Parquet file would begin with another's text): refused, as ClickHouse's parser says."""
    from columnist.store.query_guard import several_statements

    if reader.store is not None and several_statements(reader.store.client, text):  # the worker's page checks its own
        fail("one statement at a time: each would print its own result", 2)


def register(app: typer.Typer) -> None:
    app.command()(query)
