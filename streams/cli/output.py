"""Printing query results as a table, CSV or JSON lines."""

from __future__ import annotations

import csv
import json
import sys
from typing import Sequence

from columnist.streams.store.rows import plain


def print_rows(columns: Sequence[str], rows: Sequence[Sequence], fmt: str = "table") -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[plain(v) for v in row] for row in rows])
    elif fmt == "json":
        for row in rows:
            print(json.dumps({c: plain(v) for c, v in zip(columns, row)}, default=str))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, caption=f"{len(rows)} row(s)")
        for row in rows:
            table.add_row(*(str(plain(v)) for v in row))
        Console().print(table)
