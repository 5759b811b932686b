"""Names from outside (file names, URIs, ids, vocabulary texts) made safe to print.

A file name may hold a newline or a terminal escape sequence; printed raw it can forge log
lines or rewrite the terminal. Every message that names something it did not write passes
the name through ``printable`` first.
"""

from __future__ import annotations

import re

TERMINAL_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What a terminal acts on instead of showing: control characters, line and paragraph
separators, and the marks that reverse the direction of the text after them."""


def printable(text: object, limit: int = 200) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...) and cut to ``limit``
    characters (with an ellipsis)."""
    value = str(text)
    cut = value[:limit]
    escaped = "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                      for ch in cut)
    return escaped + ("…" if len(value) > limit else "")


def controls_escaped(text: str) -> str:
    """``text`` whole, with only what a terminal would act on escaped (``printable`` escapes
    every character Python does not call printable, a no-break space or a joined emoji too:
    right for a name in a message, not for a value in a table)."""
    return TERMINAL_CONTROLS.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)
