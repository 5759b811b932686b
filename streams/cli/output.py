"""Printing query results on a terminal: a table that fits, or one row at a time.

Piped output is never printed here: it is ClickHouse's own bytes (cli.query). On a terminal
a result is a table when it fits the width, else vertical (one ``column: value`` line each,
as ClickHouse's Vertical format), an empty result says "0 rows", and floats are shown at a
readable precision (six significant digits: 5.999999848427251e-05 is 6e-05).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from columnist.printable import controls_escaped
from columnist.store.rows import plain


def shown(value: Any) -> str:
    """A value as a terminal shows it, its control characters escaped (an image id is a file
    name, which may hold an escape sequence or a newline); other text as it is (a no-break
    space, an emoji joined by a zero-width joiner)."""
    value = plain(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    text = "NULL" if value is None else str(value)
    return controls_escaped(text)


def tsv_field(value: Any) -> str:
    """A value in a TabSeparated line, escaped as ClickHouse escapes it (a tab or a newline in
    a file name would otherwise split a field or a row)."""
    text = str(value)
    for raw, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\0", "\\0")):
        text = text.replace(raw, escaped)
    return text


def write_tsv(columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Rows as TabSeparatedWithNames on stdout: what a command prints when piped."""
    sys.stdout.write("\t".join(map(tsv_field, columns)) + "\n")
    for row in rows:
        sys.stdout.write("\t".join(map(tsv_field, row)) + "\n")


def print_rows(columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """A table with a header and the row count; vertical when the table would not fit."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not rows:
        console.print("  ".join(shown(c) for c in columns), style="bold", highlight=False, markup=False)
        console.print("0 rows", highlight=False)
        return
    cells = [[shown(v) for v in row] for row in rows]
    names = [shown(c) for c in columns]
    caption = f"{len(rows)} row{'' if len(rows) == 1 else 's'}"
    widths = [max([len(c)] + [len(row[i]) for row in cells[:200]]) for i, c in enumerate(names)]
    if sum(w + 3 for w in widths) + 1 > console.width and len(columns) > 1:  # rich would cut values short
        name_width = max(len(c) for c in names)
        for number, row in enumerate(cells, start=1):
            console.print(f"Row {number}:", style="bold", highlight=False)
            for column, value in zip(names, row):
                console.print(f"  {column.ljust(name_width)}  {value}", highlight=False, soft_wrap=True, markup=False)
        console.print(caption, highlight=False)
        return
    table = Table(caption=caption)
    for name in names:
        table.add_column(Text(name))
    for row in cells:
        table.add_row(*map(Text, row))  # text, never markup: a file name may hold '[/]'
    console.print(table)
