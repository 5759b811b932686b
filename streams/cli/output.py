"""Printing query results as a table on a terminal."""

from __future__ import annotations

from typing import Sequence

from columnist.store.rows import plain


def print_rows(columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """A table with a header (also when there are no rows) and the row count."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, caption=f"{len(rows)} row{'' if len(rows) == 1 else 's'}")
    for row in rows:
        table.add_row(*(str(plain(v)) for v in row))
    Console().print(table)
