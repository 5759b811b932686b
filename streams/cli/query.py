"""`columnist query`: SQL against the store, directly or through the worker that owns it."""

from __future__ import annotations

from typing import Optional

import typer

from columnist.streams.cli.common import DbOption, fail, settings


def query(
    sql: str = typer.Argument(..., help="A SQL query, e.g. \"SELECT image_id FROM columnist.image_columns WHERE earth > 0.9\"."),
    db: Optional[str] = DbOption,
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Run a SQL query and print the result (through the worker while it owns an embedded database)."""
    from columnist.streams.cli.output import print_rows
    from columnist.streams.store.reader import QueryFailed, Reader

    if format not in ("table", "csv", "json"):
        fail(f"--format must be table, csv or json, not {format!r}", 2)
    reader = Reader(db or settings().db, settings())
    try:
        columns, rows = reader.query(sql)
    except (QueryFailed, ConnectionError) as err:
        fail(f"query failed: {err}")
    finally:
        reader.close()
    print_rows(columns, rows, format)


def register(app: typer.Typer) -> None:
    app.command()(query)
