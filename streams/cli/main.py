"""The ``columnist`` command line: the root command, composed of one module per command group.

Each command imports what it needs when it runs, so ``columnist --help`` and
``columnist vocab validate`` start in a fraction of a second without loading the model
runtime, the stream processor or the database engine.
"""

from __future__ import annotations

import os
import sys

import typer

from columnist.cli import deadletters, model, query, sidecars, store, stream, tag, vocab, watch, workbench
from columnist.cli.help import words_not_types

words_not_types()

app = typer.Typer(help="Turn a CLIP model into ClickHouse columns: one confidence per attribute, per image.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _print_version(wanted: bool) -> None:
    if wanted:
        from columnist import __version__

        typer.echo(f"columnist {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error (or COLUMNIST_DEBUG=1).")
         ) -> None:
    """Turn a CLIP model into ClickHouse columns: one confidence per attribute, per image."""
    if debug:
        os.environ["COLUMNIST_DEBUG"] = "1"


for group in (tag, query, vocab, stream, deadletters, workbench, model, store, sidecars, watch):
    group.register(app)


def main() -> None:
    """Run a command; an expected failure ends in a short message and its exit code
    (cli.errors), never a traceback unless --debug asks for one."""
    try:
        app()
    except Exception as err:
        if os.environ.get("COLUMNIST_DEBUG"):
            raise
        from columnist.cli.errors import describe

        code, message = describe(err)
        sys.stderr.write(message.rstrip() + "\n")
        sys.exit(code)


if __name__ == "__main__":
    main()
