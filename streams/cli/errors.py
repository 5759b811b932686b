"""Expected failures as one or two lines a person can act on, and an exit code per kind.

Whatever a command raises ends here (``main``): known kinds become a short message naming
the thing involved and what to do; anything else a one-line summary. ``--debug`` or
``COLUMNIST_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

USAGE, CONFIGURATION, UNAVAILABLE, LOCKED, FAILED = 2, 3, 4, 5, 1
"""Exit codes: a bad argument or DSN; a bad vocabulary, model or path; ClickHouse or Kafka
unreachable; an embedded database owned by another process; anything else."""


def describe(err: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception that escaped a command."""
    from columnist.models.layouts import LayoutError
    from columnist.models.pull import InvalidRepoId, PullError
    from columnist.models.registry import ModelNotFound
    from columnist.settings import get_settings
    from columnist.store import ModelMismatch, StoreUnavailable
    from columnist.store.clickhouse import InvalidDSN
    from columnist.store.reader import StoreLocked
    from columnist.vocabulary_change import VocabularyConflict
    from columnist.vocab.schema import VocabularyError

    if isinstance(err, (InvalidDSN, InvalidRepoId)):
        return USAGE, str(err)
    if isinstance(err, StoreUnavailable):
        return UNAVAILABLE, (f"cannot reach ClickHouse: {_short(err)}\n"
                             "start the server, or point --db / COLUMNIST_DB at one (chdb://PATH needs no server)")
    if isinstance(err, StoreLocked):
        return LOCKED, str(err)
    if _is_kafka_error(err):
        kafka = get_settings().kafka
        return UNAVAILABLE, (f"cannot reach Kafka at {kafka}: {_short(err)}\n"
                             "start it (make kafka-up) or set COLUMNIST_KAFKA")
    if isinstance(err, PullError):
        return UNAVAILABLE, str(err)
    if isinstance(err, (ModelNotFound, LayoutError, VocabularyError, VocabularyConflict, ModelMismatch)):
        return CONFIGURATION, str(err)
    if isinstance(err, FileNotFoundError):
        return CONFIGURATION, f"not found: {err.filename or _short(err)}"
    if isinstance(err, (OSError, ValueError)):
        return FAILED, f"{type(err).__name__}: {_short(err)}"
    return FAILED, (f"unexpected error: {type(err).__name__}: {_short(err)}\n"
                    "run again with --debug (or COLUMNIST_DEBUG=1) for the traceback")


def _is_kafka_error(err: BaseException) -> bool:
    module = type(err).__module__ or ""
    return module.startswith(("aiokafka", "kafka")) or "KafkaConnectionError" in type(err).__name__


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:400] + ("…" if len(text) > 400 else "")
