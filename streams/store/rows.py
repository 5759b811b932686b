"""Query results as plain JSON values, for the control page and the CLI alike."""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> Any:
    """A JSON-friendly value: lists, ISO timestamps (floats keep their full precision)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
