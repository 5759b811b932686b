"""One root for columnist's errors; each kind carries the exit code a command ends with.

Modules raise their own subclasses (``ImageError``, ``StoreUnavailable``, ...) of the kinds
below, so a caller can catch one concept, and the command line turns any of them into a short
message and its code without knowing the module it came from (cli.main). The README's table
of exit codes is this file.
"""

from __future__ import annotations


class ColumnistError(Exception):
    """Anything columnist expects to go wrong. ``hint``: a second line saying what to do."""

    exit_code = 1
    hint = ""


class UsageError(ColumnistError):
    """A bad argument: a DSN, a repository id, a query that cannot run here."""

    exit_code = 2


class ConfigurationError(ColumnistError):
    """A bad vocabulary, model or path: fix the file or the setting, then run again."""

    exit_code = 3


class Unavailable(ColumnistError):
    """ClickHouse, Kafka or the model hub cannot be reached: start it, or try again later."""

    exit_code = 4


class Locked(ColumnistError):
    """An embedded database owned by another process (a running worker), or a control socket
    another worker serves."""

    exit_code = 5


class BadInput(ColumnistError):
    """One event, file or image that cannot be used: that input's dead letter (worker) or its
    'failed' line (tag); never the batch's or the command's end."""

    exit_code = 1


INTERRUPTED = 130
"""Exit code of a command stopped with Ctrl-C (what it had stored stays)."""

TOWER_STUCK = 6
"""Exit code of a worker whose image tower did not answer a batch in COLUMNIST_ENCODE_TIMEOUT
(its runtime stuck in native code, which nothing in the process can interrupt)."""

DECODE_STUCK = 7
"""Exit code of a process whose decoder did not finish one file in COLUMNIST_DECODE_TIMEOUT
(the file's content is listed, and refused from then on: columnist.decode_watch)."""
