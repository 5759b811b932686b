"""`columnist deadletters`: what the workers could not use, and why, without a Kafka client."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer

from columnist.cli.common import settings, utf8_text
from columnist.errors import UsageError


class BadTime(UsageError):
    """A --since that is neither a duration nor a date."""


def since_option(text: Optional[str]) -> Optional[datetime]:
    """'30m', '2h', '7d', or an ISO date or time ('2026-11-29', '2026-11-29T10:00')."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"--since {text!r}: give a duration (30m, 2h, 7d) or a date or time (2026-11-29T10:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def deadletters(
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN", help="Only letters since then: 30m, 2h, 7d "
                                        "or a date/time (default: all)."),
    grep: str = typer.Option("", "--grep", metavar="TEXT", help="Only letters whose reason, error, image id, worker "
                                                               "or event contains TEXT (any case).", callback=utf8_text),
    all_groups: bool = typer.Option(False, "--all-groups", help="Letters of every consumer group (default: "
                                                                "$COLUMNIST_GROUP's)."),
    limit: int = typer.Option(50, metavar="N", help="Show at most the newest N letters."),
) -> None:
    """List dead letters (newest last) and count them by reason. Piped: one JSON letter a line."""
    from columnist.cli.output import print_rows
    from columnist.kafka.deadletters import read_dead_letters

    config = settings()
    found = read_dead_letters(config, since_option(since), grep, None if all_groups else config.group, limit)
    if not sys.stdout.isatty():
        import json

        for letter in found.letters:
            sys.stdout.write(json.dumps(letter) + "\n")
        return
    print_rows(["time", "image_id", "error", "reason", "worker"],
               [[str(l.get("time", ""))[:19], str(l.get("image_id") or "")[:80], l.get("error", ""),
                 str(l.get("reason", ""))[:160], l.get("worker", "")] for l in found.letters])
    print_rows(["letters", "reason"], [[n, kind] for kind, n in found.reasons.most_common()])
    scope = "all groups" if all_groups else f"group {config.group!r}"
    typer.echo(f"{found.matching} dead letters ({scope}{', since ' + since if since else ''}"
               f"{', containing ' + repr(grep) if grep else ''}) on {config.topic_deadletter}; "
               f"{len(found.letters)} shown")
    if not found.matching:
        return
    if found.matching > len(found.letters):
        typer.echo(f"(--limit {limit}: the newest shown; --since or --grep narrow it)")


def register(app: typer.Typer) -> None:
    app.command()(deadletters)
