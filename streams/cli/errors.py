"""Expected failures as one or two lines a person can act on, and an exit code per kind.

Whatever a command raises ends here (``main``). A ColumnistError carries its exit code and,
maybe, a hint (errors.py); the few errors of Python itself that reach a command (a file not
found, a bad value) have a code here; anything else is a one-line summary. ``--debug`` or
``COLUMNIST_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

from columnist.errors import (BadInput, ColumnistError, ConfigurationError, Locked, Unavailable, UsageError)

USAGE, CONFIGURATION, UNAVAILABLE, LOCKED = (UsageError.exit_code, ConfigurationError.exit_code,
                                             Unavailable.exit_code, Locked.exit_code)
FAILED = BadInput.exit_code


def describe(err: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception that escaped a command."""
    if isinstance(err, ColumnistError):
        return err.exit_code, _short(err) + (f"\n{err.hint}" if err.hint else "")
    if isinstance(err, FileNotFoundError):
        return CONFIGURATION, f"not found: {err.filename or _short(err)}"
    if isinstance(err, (OSError, ValueError)):
        return FAILED, f"{type(err).__name__}: {_short(err)}"
    return FAILED, (f"unexpected error: {type(err).__name__}: {_short(err)}\n"
                    "run again with --debug (or COLUMNIST_DEBUG=1) for the traceback")


def _short(err: BaseException) -> str:
    """The message on as few lines as it has (a vocabulary's problems keep theirs), bounded."""
    lines = [" ".join(line.split()) for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    text = "\n".join(("  " if i else "") + line for i, line in enumerate(lines[:12]))
    if len(lines) > 12:
        text += f"\n  … and {len(lines) - 12} more"
    return text[:2000]
