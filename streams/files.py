"""Reading files that may be hostile: regular files only, never more than a bound; and
writing a file whole or not at all.

A FIFO or a device passes a size check and then blocks or never ends, and a file may grow
after it was measured; so a file is opened without blocking, checked on the opened
descriptor (``fstat``: what was checked is what is read), and read up to the bound plus one
byte. The worker's fetcher (worker.fetch), `tag` and the model folders all read through here.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from urllib.parse import unquote

from columnist.errors import BadInput
from columnist.printable import printable


class FileRefused(BadInput, OSError):
    """A file that is not read: not a regular file, or over the size bound. ``reason`` says
    why without naming the file (the caller names it)."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"{printable(name)}: {reason}")

    def __str__(self) -> str:
        return f"{printable(self.name)}: {self.reason}"


def file_uri_path(path: str) -> str:
    """The file a file:// URI's (percent-encoded) path names. An escape may stand for a byte
    that is not UTF-8 (an old archive's Latin-1 name: ``Path.as_uri()`` writes ``m%FFoon.jpg``):
    it is kept as that byte (surrogateescape, as Python names such files) so the file is found."""
    return unquote(path, errors="surrogateescape")


def as_text(name: str) -> str:
    """``name`` as text every store and broker takes: the bytes of a file name that are not
    UTF-8 (Python holds them as lone surrogates) written as backslash escapes, ``m\\xffoon.jpg``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def open_nonblocking(path: str | Path, nofollow: bool = False) -> int:
    """A read-only descriptor; a FIFO does not block the open (it is refused afterwards).
    ``nofollow``: a final symbolic link is refused (ELOOP) instead of followed."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags)


def kind(mode: int) -> str:
    """What a file that is not regular is, in words."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_status(fd: int, name: str) -> os.stat_result:
    """The opened file's status; FileRefused unless it is a regular file."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(name, f"{kind(info.st_mode)}, not a regular file")
    return info


def read_at_most(fd: int, max_bytes: int, name: str, info: os.stat_result | None = None) -> bytes:
    """The whole regular file behind ``fd``, refused (FileRefused) beyond ``max_bytes`` before
    any byte is read, or while it is read (it may grow after it was measured)."""
    info = info or regular_status(fd, name)
    if info.st_size > max_bytes:
        raise FileRefused(name, f"{info.st_size:,} bytes, over the limit of {max_bytes:,} bytes")
    chunks, total = [], 0
    while total <= max_bytes:
        chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise FileRefused(name, f"grew over the limit of {max_bytes:,} bytes while it was read")
    return b"".join(chunks)


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """A regular file's bytes, at most ``max_bytes`` (FileRefused beyond, or for a FIFO, a
    device or a folder; OSError when it cannot be opened)."""
    fd = open_nonblocking(path)
    try:
        return read_at_most(fd, max_bytes, str(path))
    finally:
        os.close(fd)


def umask() -> int:
    """The process's umask, read without changing it (other threads may be creating files)."""
    try:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0o022


def write_atomically(path: Path, text: str) -> None:
    """``text`` into a file beside ``path``, then renamed over it: a reader sees the old file or
    the new one, never half of it. The new file keeps the old one's mode, else the umask's."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask())
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
