"""Names from outside (file names, URIs, ids, vocabulary texts) made safe to print.

A file name may hold a newline or a terminal escape sequence; printed raw it can forge log
lines or rewrite the terminal. Every message that names something it did not write passes
the name through ``printable`` first.
"""

from __future__ import annotations


def printable(text: object, limit: int = 200) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...) and cut to ``limit``
    characters (with an ellipsis)."""
    value = str(text)
    cut = value[:limit]
    escaped = "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                      for ch in cut)
    return escaped + ("…" if len(value) > limit else "")
