"""The ``columnist`` command line: the root command, composed of one module per command group.

Each command imports what it needs when it runs, so ``columnist --help`` and
``columnist vocab validate`` start in a fraction of a second without loading the model
runtime, the stream processor or the database engine.
"""

from __future__ import annotations

import typer

from columnist.streams.cli import model, query, stream, tag, vocab, workbench

app = typer.Typer(help="Turn a CLIP model into ClickHouse columns: one confidence per attribute, per image.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _print_version(wanted: bool) -> None:
    if wanted:
        from columnist import __version__

        typer.echo(f"columnist {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Turn a CLIP model into ClickHouse columns: one confidence per attribute, per image."""


for group in (tag, query, vocab, stream, workbench, model):
    group.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
