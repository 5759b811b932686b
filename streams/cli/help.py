"""Help that reads as words: typer prints Python types beside parameters (``<list[Path]>``,
``<bool>`` beside a flag, ``<str>``); columnist's help shows each parameter's metavar (``DSN``,
``PATHS``), nothing beside a flag, and the option's name in capitals otherwise."""

from __future__ import annotations


def words_not_types() -> None:
    from typer.core import TyperArgument, TyperOption

    def argument(self, ctx):
        return None  # its name column shows the metavar already

    def option(self, ctx):
        if self.is_flag or self.count:
            return None
        return self.metavar or (self.name or "value").upper()

    TyperArgument.display_type_rich = argument
    TyperOption.display_type_rich = option
