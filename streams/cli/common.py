"""Helpers shared by the CLI commands: settings, vocabularies, the store,
and failing with a clear message and a non-zero exit."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer

from columnist.printable import printable
from columnist.vocab import load_vocabulary_arg
from columnist.vocab.schema import Vocabulary


DbOption = typer.Option(None, "--db", metavar="DSN",
                        help="ClickHouse DSN (default: $COLUMNIST_DB, or chdb://~/.columnist/db).")
ModelOption = typer.Option(None, "--model", metavar="NAME",
                           help="'tiny-clip', 'mock', a pulled model's OWNER/NAME or a model directory "
                                "(default: $COLUMNIST_MODEL).")
VocabOption = typer.Option(None, "--vocab", metavar="NAME",
                           help="A vocabulary: the name of one applied to the store (its applied version), a YAML "
                                "file, or a built-in name (default: $COLUMNIST_VOCAB's name).")


def utf8_text(value):
    """A callback for options of free text that is stored or sent (a collection, a phrase, SQL):
    text holding bytes that are not UTF-8 (a shell passes them as lone surrogates) is refused at
    once, exit 2, instead of failing deep in the store or the broker."""
    for text in [value] if isinstance(value, str) else value or []:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise typer.BadParameter(f"'{printable(text)}' is not valid UTF-8 text") from None
    return value


def settings():
    from columnist.settings import get_settings

    return get_settings()


def exit_now(code: int = 0) -> NoReturn:
    """End a finished command at once, once a model still opening has opened (the runtime
    writes its cache meanwhile) and what it printed and logged is flushed: the embedded
    engine's and the runtime's teardown (0.2-0.3 s after `tag`, traced) guard nothing it
    needs, as its store is closed and its writes are on disk."""
    import logging
    import os
    import sys
    import threading

    from columnist.models.clip import OPENING_THREAD

    for thread in threading.enumerate():
        if thread.name == OPENING_THREAD:
            thread.join()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def vocabulary_or_exit(name_or_path: Optional[str]) -> Vocabulary:
    """The vocabulary argument (default: $COLUMNIST_VOCAB), or exit naming every problem."""
    from columnist.vocab.schema import VocabularyError

    from columnist.cli.errors import CONFIGURATION

    try:
        return load_vocabulary_arg(name_or_path or settings().vocab)
    except VocabularyError as err:
        fail(str(err), CONFIGURATION)


WHEN_LOCKED = {
    "replay": "a running worker applies vocabularies itself: `columnist vocab push FILE`; or stop it first",
    "tag": "stop the worker first, or let it ingest them: `columnist publish images PATH`",
    "repair": "a running worker owns it: stop the worker first (it mends orphans itself when it starts)",
    "sidecars": "a running worker writes sidecars itself (COLUMNIST_SIDECARS=accepted); or stop it first",
    "migrate": "a running worker moves its store itself: add --publish to send the step to the workers; or stop "
               "it first",
    "workbench": "the workbench reads stored embeddings, which only the process owning an embedded database can: "
                 "stop the worker first, or keep both on a ClickHouse server (COLUMNIST_DB=http://…)",
}


def store_or_exit(db: Optional[str], purpose: str, create: bool = False):
    """The store for --db (default: $COLUMNIST_DB), or exit saying what to do when a worker
    owns it (``purpose``: a key of WHEN_LOCKED). Only ``create`` makes one where there is none
    (tag, replay): a reading command names the missing database instead (NoStore)."""
    from columnist.cli.errors import LOCKED
    from columnist.store import StoreLocked, connect

    try:
        return connect(db or settings().db, settings().cluster, create=create)
    except StoreLocked as err:
        fail(f"{err}\n{WHEN_LOCKED[purpose]}", LOCKED)


def vocabulary_in(store, given: Optional[str]) -> Vocabulary:
    """What --vocab means in every command: a YAML file when it names one; else the vocabulary
    of that name as applied to the store; else a built-in. Without --vocab: COLUMNIST_VOCAB's
    vocabulary, as applied when it is."""
    from pathlib import Path

    from columnist.vocab.schema import CODE_PATTERN

    import re

    argument = given or settings().vocab
    if Path(argument).is_file():
        vocab = vocabulary_or_exit(argument)
        return (store.applied_vocabulary(vocab.name) or vocab) if given is None else vocab
    applied = store.applied_vocabulary(argument) if re.fullmatch(CODE_PATTERN, argument) else None
    return applied or vocabulary_or_exit(argument)


def encoders_for(store, encoder, given: Optional[str]):
    """The encoder to write with and, while the store moves to another model, the target's.
    Without --model (``given``), a store that moved away from COLUMNIST_MODEL's model is
    written with the model it serves (said on stderr); with it, ModelMismatch says why not."""
    from columnist.models.registry import load_encoder
    from columnist.store import ModelMovedOn, check_model

    config = settings()

    def load(ref: str):
        return load_encoder(ref, config.threads, config.batch_size, runtime=config.runtime)
    try:
        state = check_model(store, encoder.name)
    except ModelMovedOn as moved:
        if given:
            raise
        state = moved.state
        typer.echo(f"{moved}: using {state.serving_ref} (set COLUMNIST_MODEL={state.serving_ref})", err=True)
        encoder = load(state.serving_ref)
    store.remember_ref(encoder.name, getattr(encoder, "ref", encoder.name))
    return encoder, (load(state.target_ref) if state is not None and state.target else None)
