"""Which SQL the worker's control page runs: one SELECT about columnist's own tables, checked
by ClickHouse's own parser.

``readonly=1`` is not a sandbox: the embedded engine still runs ``SELECT … INTO OUTFILE``,
``KILL QUERY`` and the ``file()`` function under it, and every SELECT may read the host's
internals (``system.*``, ``hostName()``, ``getSetting()``, ``addressToLine()``). So a
statement is first canonicalised by ClickHouse itself (``formatQuerySingleLine``, with the
text passed as a parameter: it refuses several statements and syntax errors), then its syntax
tree (``EXPLAIN AST``) must be a SELECT without an output file, table functions or ``APPLY``;
last, the analysed tree (``EXPLAIN QUERY TREE``, where every function call and table is
spelled out under its canonical name) may name only columnist's own tables and views, and no
function that reads files, the host, the server's settings or the network. The canonical
text that was checked is the text that runs, inside ``SELECT * FROM (…) LIMIT rows + 1`` (the
engine enforces its result limits on a single block only so), with limits on time, rows,
bytes, memory and threads, and ``readonly=1`` on top.

Two other statements are answered, so columns can be discovered while a worker owns the
database: ``SHOW TABLES`` (of columnist) and ``DESCRIBE TABLE columnist.<name>``.
"""

from __future__ import annotations

import re
from typing import Any

from columnist.errors import UsageError

MAX_SQL_CHARS = 65_536
DATABASE = "columnist"
ALLOWED_TABLES = {"system.one"}
"""Tables outside columnist's database a query may name: ``SELECT 1`` reads system.one."""
DENIED_CATEGORIES = {"AI", "Introspection", "Dictionary", "Embedded Dictionary", "Machine Learning"}
"""Function categories (system.functions) refused as a class: calls to models over the network,
the server's own code and memory, dictionaries (which may read files or other servers), and
models loaded from files."""
DENIED_FUNCTIONS = {name.lower() for name in (
    "file", "filesystemAvailable", "filesystemCapacity", "filesystemUnreserved", "getSetting", "getSettingOrDefault",
    "getMergeTreeSetting", "getServerSetting", "getMacro", "getServerPort", "tcpPort", "hostName", "FQDN",
    "fullHostName", "serverUUID", "uptime", "version", "revision", "buildId", "getOSKernelVersion", "displayName",
    "currentUser", "authenticatedUser", "currentProfiles", "currentRoles", "enabledProfiles", "enabledRoles",
    "defaultProfiles", "defaultRoles", "queryID", "initialQueryID", "initialQueryStartTime", "connectionId",
    "currentRequestURL", "currentHandler", "getClientHTTPHeader", "globalVariable", "hasColumnInTable",
    "getMaxTableNameLengthForDatabase", "transactionID", "transactionLatestSnapshot", "transactionOldestSnapshot",
    "zookeeperSessionUptime", "showCertificate", "shardNum", "shardCount", "joinGet", "joinGetOrNull",
    "generateSerialID", "catboostEvaluate", "naiveBayesClassifier", "currentSchemas", "currentDatabase",
    "currentQueryID", "pgGetUserById", "pgTableIsVisible", "serverTimeZone", "timeZone")}
"""Functions about the host, the server, the session or files (resolved to canonical names)."""
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class QueryRefused(UsageError, ValueError):
    """A statement the control page will not run; the message says why."""


def query_settings(timeout: float, max_rows: int, max_bytes: int) -> dict[str, Any]:
    # readonly last: a client that applies settings one by one must set the limits before it
    return {"max_execution_time": timeout, "max_result_rows": max_rows, "max_result_bytes": max_bytes,
            "result_overflow_mode": "throw", "max_memory_usage": MAX_MEMORY,
            "max_threads": 1,  # a query for someone else never takes both cores from ingest
            "readonly": 1}


MAX_MEMORY = 1_000_000_000
"""Bytes a query for someone else may take (the worker keeps its model and its batches)."""
ANALYSIS = {"max_execution_time": 10, "max_memory_usage": MAX_MEMORY, "max_threads": 1, "readonly": 1}
"""Analysing a statement computes its scalar subqueries: under the same bounds as running it."""


def guarded_statement(client: Any, sql: str, max_rows: int) -> str:
    """The statement to run for ``sql``: its canonical SELECT, bounded to ``max_rows`` + 1
    rows, or a SHOW TABLES / DESCRIBE of columnist's own; else QueryRefused."""
    canonical = canonical_text(client, sql)
    if canonical.startswith(("SHOW ", "DESCRIBE ")):
        return _discovery(canonical)
    check_select(client, canonical)
    return f"SELECT * FROM ({canonical}) LIMIT {int(max_rows) + 1}"


def canonical_text(client: Any, sql: str) -> str:
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"the statement is {len(sql):,} characters, over the limit of {MAX_SQL_CHARS:,}")
    try:
        return client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql},
                            settings={"readonly": 1}).result_rows[0][0]
    except Exception as err:
        raise QueryRefused(f"not one valid SQL statement: {_first_line(err)}") from None


def several_statements(client: Any, sql: str) -> bool:
    """Whether ClickHouse's parser reads ``sql`` as more than one statement (whatever its length)."""
    try:
        client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql}, settings={"readonly": 1})
    except Exception as err:  # noqa: BLE001 - a syntax error is the engine's to report when the query runs
        return "multi-statements" in str(err).lower()
    return False


def _discovery(canonical: str) -> str:
    if canonical in ("SHOW TABLES", f"SHOW TABLES FROM {DATABASE}"):
        return f"SHOW TABLES FROM {DATABASE}"
    described = re.fullmatch(rf"DESCRIBE TABLE {DATABASE}\.({IDENTIFIER.pattern})", canonical)
    if described:
        return canonical
    raise QueryRefused(f"only `SHOW TABLES` and `DESCRIBE TABLE {DATABASE}.<name>` are answered here, "
                       f"not {canonical[:80]!r}")


def check_select(client: Any, canonical: str) -> None:
    """QueryRefused unless ``canonical`` is a SELECT the page may run."""
    if not canonical.startswith(("SELECT ", "WITH ", "(")):  # "(SELECT …) EXCEPT (SELECT …)"
        raise QueryRefused(f"only SELECT statements can run here, not {canonical.split(' ', 1)[0]!r}")
    denied = _denied_functions(client)
    # no settings: the embedded client writes them into the statement, where the tree would show them
    _check_tree([row[0] for row in client.query(f"EXPLAIN AST {canonical}").result_rows], denied)
    try:
        analysed = client.query(f"EXPLAIN QUERY TREE {canonical}", settings=ANALYSIS)
    except Exception as err:
        raise QueryRefused(f"cannot be analysed: {_first_line(err)}") from None
    _check_analysed([row[0] for row in analysed.result_rows], denied)


def _check_tree(lines: list[str], denied: set[str] = DENIED_FUNCTIONS) -> None:
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
        if depth == 1 and kind == "Identifier" and rest != "Native":
            raise QueryRefused("a format clause is not allowed here: `columnist query --format` chooses the output "
                               "format")
        if kind == "Set":
            raise QueryRefused("a settings clause is not allowed here: the page sets the limits")
        if kind == "Function" and parent.get(depth - 1) == "TableExpression" \
                and not rest.split(" ")[0].startswith(f"{DATABASE}."):  # columnist's parametrized views are its own
            raise QueryRefused(f"table functions such as {rest.split(' ')[0]}() are not allowed; "
                               "query columnist's tables")
        if kind == "TableIdentifier" and "." in rest and not rest.startswith(f"{DATABASE}.") \
                and rest.split(" ")[0] not in ALLOWED_TABLES:
            raise QueryRefused(f"{rest.split(' ')[0]} is not one of columnist's tables: only {DATABASE}.* can be read here")
        if kind == "Function" and rest.split(" ")[0].lower() in denied:
            raise QueryRefused(f"the function {rest.split(' ')[0]}() is not allowed here (it reads files, the host or "
                               "the server's state)")
        if kind == "ColumnsApplyTransformer":
            raise QueryRefused("APPLY is not allowed here; call the function on the columns by name")
        parent[depth] = kind


def _check_analysed(lines: list[str], denied: set[str]) -> None:
    """``EXPLAIN QUERY TREE`` lines: 'FUNCTION id: 2, function_name: file, …', 'TABLE id: 3, …,
    table_name: columnist.images', 'TABLE_FUNCTION …'."""
    for line in lines:
        node = line.strip()
        if node.startswith("TABLE_FUNCTION") and f"table_function_name: {DATABASE}." not in node:
            raise QueryRefused("table functions are not allowed; query columnist's tables")
        if node.startswith("TABLE ") and "table_name: " in node:
            table = node.split("table_name: ", 1)[1].split(",", 1)[0].strip()
            if not table.startswith(f"{DATABASE}.") and table not in ALLOWED_TABLES:
                raise QueryRefused(f"{table} is not one of columnist's tables: only {DATABASE}.* can be read here")
        if node.startswith("FUNCTION") and "function_name: " in node:
            name = node.split("function_name: ", 1)[1].split(",", 1)[0].strip()
            if name.lower() in denied:
                raise QueryRefused(f"the function {name}() is not allowed here (it reads files, the host or the "
                                   "server's state)")


_DENIED_BY_CLIENT: dict[int, set[str]] = {}


def _denied_functions(client: Any) -> set[str]:
    """DENIED_FUNCTIONS, the functions of the denied categories, and every alias of either
    (asked of this engine once per connection)."""
    key = id(client)
    if key not in _DENIED_BY_CLIENT:
        rows = client.query("SELECT name, alias_to, categories FROM system.functions",
                            settings={"readonly": 1}).result_rows
        denied = set(DENIED_FUNCTIONS)
        denied |= {name.lower() for name, _, category in rows if category in DENIED_CATEGORIES}
        denied |= {name.lower() for name, alias_to, _ in rows if alias_to and alias_to.lower() in denied}
        _DENIED_BY_CLIENT.clear()
        _DENIED_BY_CLIENT[key] = denied
    return _DENIED_BY_CLIENT[key]


def _first_line(err: Exception) -> str:
    """The engine's reason, once, without its version (nothing about the server for the asker)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"\s*\(version [^)]*\)", "", text)
    return text.split(": In scope")[0][:300]
