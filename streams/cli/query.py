"""`columnist query`: SQL against the store, directly or through the worker that owns it.

On a terminal the result is a table; piped, it is ClickHouse's TabSeparatedWithNames (a
header line, then one line per row, full precision), so `columnist query … | sort` works.
`--format` takes any ClickHouse output format (CSVWithNames, JSONEachRow, JSON, Parquet…)
and writes exactly what ClickHouse writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from columnist.cli.common import DbOption, fail, settings

ALIASES = {"csv": "CSVWithNames", "tsv": "TabSeparatedWithNames", "json": "JSONEachRow"}


def query(
    sql: Optional[str] = typer.Argument(None, help="A SQL query, e.g. \"SELECT image_id FROM columnist.image_columns "
                                                   "WHERE earth > 0.9\"; '-' reads it from standard input."),
    file: Optional[Path] = typer.Option(None, "--file", help="Read the query from this file."),
    db: Optional[str] = DbOption,
    format: Optional[str] = typer.Option(None, "--format", "-f", help="'table', or a ClickHouse output format "
                                         "(CSVWithNames, JSONEachRow, Parquet…; csv, tsv and json for short). Default: "
                                         "a table on a terminal, TabSeparatedWithNames when piped."),
) -> None:
    """Run a SQL query and print the result (through the worker while it owns an embedded database)."""
    from columnist.cli.reader import QueryFailed, Reader

    text = _read_sql(sql, file)
    fmt = ALIASES.get((format or "").lower(), format) or ("table" if sys.stdout.isatty() else "TabSeparatedWithNames")
    reader = Reader(db or settings().db, settings())
    try:
        if fmt == "table":
            from columnist.cli.output import print_rows

            print_rows(*reader.query(text))
        else:
            sys.stdout.buffer.write(reader.query_raw(text, fmt))
            sys.stdout.flush()
    except (QueryFailed, ConnectionError, ValueError) as err:
        fail(f"query failed: {err}")
    finally:
        reader.close()


def _read_sql(sql: str | None, file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text()
        except OSError as err:
            fail(f"cannot read the query from {file}: {err.strerror}", 2)
    if sql == "-":
        return sys.stdin.read()
    if not sql or not sql.strip():
        fail("give a query: an argument, '-' for standard input, or --file FILE", 2)
    return sql


def register(app: typer.Typer) -> None:
    app.command()(query)
