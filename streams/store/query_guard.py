"""Which SQL the worker's control page runs: one SELECT, checked by ClickHouse's own parser.

``readonly=1`` is not a sandbox: the embedded engine still runs ``SELECT … INTO OUTFILE``,
``KILL QUERY`` and the ``file()`` function under it. So a statement is first canonicalised
by ClickHouse itself (``formatQuerySingleLine``, with the text passed as a parameter: it
refuses several statements and syntax errors), then its syntax tree (``EXPLAIN AST``) must
be a SELECT without an output file, without table functions, without the functions that read
files and without ``APPLY`` (whose function the syntax tree does not show). Last, the
analysed tree (``EXPLAIN QUERY TREE``, where every function call and table function is
spelled out) is checked the same way. The canonical text that was checked is the text that
runs, with limits on time, rows, bytes, memory and threads, and ``readonly=1`` on top.
"""

from __future__ import annotations

from typing import Any

MAX_SQL_CHARS = 65_536
FILE_FUNCTIONS = {"file", "catboostevaluate", "naivebayesclassifier"}
"""Scalar functions that read files of the machine (table functions are refused as a class)."""


class QueryRefused(ValueError):
    """A statement the control page will not run; the message says why."""


def query_settings(timeout: float, max_rows: int, max_bytes: int) -> dict[str, Any]:
    # readonly last: a client that applies settings one by one must set the limits before it
    return {"max_execution_time": timeout, "max_result_rows": max_rows, "max_result_bytes": max_bytes,
            "result_overflow_mode": "throw", "max_memory_usage": 2_000_000_000,
            "max_threads": 1,  # a query for someone else never takes both cores from ingest
            "readonly": 1}


def canonical_select(client: Any, sql: str) -> str:
    """The canonical text of ``sql`` if it is one SELECT the page may run; else QueryRefused."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"the statement is {len(sql):,} characters, over the limit of {MAX_SQL_CHARS:,}")
    try:
        canonical = client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql},
                                 settings={"readonly": 1}).result_rows[0][0]
    except Exception as err:
        raise QueryRefused(f"not one valid SQL statement: {_first_line(err)}") from None
    if not canonical.startswith(("SELECT ", "WITH ", "(")):  # "(SELECT …) EXCEPT (SELECT …)"
        raise QueryRefused(f"only SELECT statements can run here, not {canonical.split(' ', 1)[0]!r}")
    if " INTO OUTFILE " in canonical:
        raise QueryRefused("SELECT … INTO OUTFILE is not allowed (it writes files)")
    for clause in (" SETTINGS ", " FORMAT "):
        if clause in canonical:
            raise QueryRefused(f"a{clause.rstrip().lower()} clause is not allowed here: the page sets the limits, "
                               "and `columnist query --format` chooses the output format")
    _check_tree([row[0] for row in client.query(f"EXPLAIN AST {canonical}", settings={"readonly": 1}).result_rows])
    try:
        analysed = client.query(f"EXPLAIN QUERY TREE {canonical}", settings={"readonly": 1, "max_execution_time": 10})
    except Exception as err:
        raise QueryRefused(f"cannot be analysed: {_first_line(err)}") from None
    _check_analysed([row[0] for row in analysed.result_rows])
    return canonical


def _check_tree(lines: list[str]) -> None:
    """Walk ``EXPLAIN AST`` output (one node a line, indented one space per level)."""
    if not lines or not lines[0].startswith(("SelectWithUnionQuery", "SelectIntersectExceptQuery")):
        raise QueryRefused("only SELECT statements can run here")
    parent: dict[int, str] = {}
    for line in lines:
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        kind, _, rest = node.partition(" ")
        if depth == 1 and kind == "Literal":
            raise QueryRefused("SELECT … INTO OUTFILE is not allowed (it writes files)")
        if kind == "Function" and parent.get(depth - 1) == "TableExpression":
            raise QueryRefused(f"table functions such as {rest.split(' ')[0]}() are not allowed; "
                               "query columnist's tables")
        if kind == "Function" and rest.split(" ")[0].lower() in FILE_FUNCTIONS:
            raise QueryRefused(f"the function {rest.split(' ')[0]}() is not allowed (it reads files)")
        if kind == "ColumnsApplyTransformer":
            raise QueryRefused("APPLY is not allowed here; call the function on the columns by name")
        parent[depth] = kind


def _check_analysed(lines: list[str]) -> None:
    """``EXPLAIN QUERY TREE`` lines: 'FUNCTION id: 2, function_name: file, …', 'TABLE_FUNCTION …'."""
    for line in lines:
        node = line.strip()
        if node.startswith("TABLE_FUNCTION"):
            raise QueryRefused("table functions are not allowed; query columnist's tables")
        if node.startswith("FUNCTION") and "function_name: " in node:
            name = node.split("function_name: ", 1)[1].split(",", 1)[0].strip()
            if name.lower() in FILE_FUNCTIONS:
                raise QueryRefused(f"the function {name}() is not allowed (it reads files)")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(": In scope")[0][:300]
