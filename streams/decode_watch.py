"""A deadline on decoding each file (COLUMNIST_DECODE_TIMEOUT), and the list of files that broke it.

A crafted file can send a decoder (LibRaw, libheif, a Pillow plugin, FFmpeg) into a loop that
never ends; each of them has had such bugs. The thread cannot be stopped from Python, and a
worker waiting on it consumes nothing for ever while it looks alive. So, as for a stuck image
tower (tower_watch), the process names the file and exits, with code 7; but first it writes
the file's content hash to ``<run_dir>/decode-stuck.txt``, and every process on this machine
refuses that content from then on without decoding it (an ImageError: the worker's dead
letter, tag's 'failed' line). The batch comes again and is stored without it, instead of a
worker stopping on it at every start. Deleting a line lets that content be tried again.

One watchdog thread (columnist.watchdog) looks at the decodes under way four times a second;
time the process was stopped (Ctrl-Z, a paused container or VM) is not counted against a
decode: a file must not be listed for that. The list is written from a thread of its own,
given LISTING_S: the line and the exit come even when the list cannot be written (a FIFO
there, a hung mount). The watchdog needs the GIL, so a decoder stuck holding it is not seen;
Pillow's decoders, LibRaw and FFmpeg release it while they work.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from columnist import faults
from columnist.errors import DECODE_STUCK
from columnist.printable import printable
from columnist.watchdog import Watchdog, flush_logs, stack_of

log = logging.getLogger("columnist.decode")

STUCK_FILE = "decode-stuck.txt"
LISTING_S = 10.0
"""Seconds the list's write may take (a hung mount): the line and the exit come after it either way."""
_SHA256 = re.compile(rb"[0-9a-f]{64}")

_file: list[Path] = []
_refused: dict[str, object] = {"stamp": None, "hashes": frozenset()}
_exit = os._exit
"""How a process whose decoder is stuck ends (its stuck thread cannot be joined; tests replace it)."""


def _stuck(call: object, details: tuple) -> None:
    _list_and_exit(*details)


_watchdog = Watchdog("columnist-decode-watchdog", _stuck)
"""Each decode under way, with its file name, content hash and thread."""


def configure(run_dir: Path) -> None:
    """Keep the list in ``run_dir``. Unconfigured, a process takes COLUMNIST_RUN_DIR."""
    _file[:] = [Path(run_dir).expanduser() / STUCK_FILE]
    _refused.update(stamp=None, hashes=frozenset())


def stuck_file() -> Path:
    if not _file:
        from columnist.settings import get_settings

        configure(get_settings().run_path)
    return _file[0]


def refused(sha256: str) -> bool:
    """Whether decoding this content overran its deadline before."""
    return sha256 in listed()


def listed() -> frozenset[str]:
    """The contents listed (read again when the file changes: another process on this machine
    may have added to it; anything but a regular file is no list)."""
    path = stuck_file()
    try:
        info = path.stat()
    except OSError:
        return frozenset()
    stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    if stamp != _refused["stamp"]:
        hashes: frozenset[str] = frozenset()
        if stat.S_ISREG(info.st_mode):
            try:
                with path.open("rb") as lines:
                    hashes = frozenset(line[:64].decode() for line in lines if _SHA256.fullmatch(line[:64]))
            except OSError:
                return frozenset()
        _refused.update(stamp=stamp, hashes=hashes)
    return _refused["hashes"]


@contextmanager
def decoding(name: str, sha256: str, seconds: float) -> Iterator[None]:
    """Around decoding one file of content ``sha256``, which may take ``seconds`` (0: unbounded)."""
    if not seconds:
        faults.point("decode")
        yield
        return
    call = _watchdog.begin(seconds, name, sha256, threading.get_ident())
    try:
        faults.point("decode")
        yield
    finally:
        _watchdog.end(call)


def _list_and_exit(name: str, sha256: str, thread: int) -> None:
    path = stuck_file()
    try:
        stack = stack_of(thread)
        failed: list[BaseException] = []
        listing = threading.Thread(target=_list, args=(path, f"{sha256} {printable(name, 200)}\n", failed),
                                   name="columnist-decode-list", daemon=True)
        listing.start()
        listing.join(LISTING_S)
        if listing.is_alive():
            failed.append(TimeoutError(f"no answer in {LISTING_S:g} s"))
        if failed:
            kept = f"listing it in {printable(str(path))} failed ({printable(str(failed[0]), 200)}): it will be " \
                   "decoded again"
        else:
            kept = f"its content ({sha256[:12]}…) is listed in {printable(str(path))} and will not be decoded again"
        log.critical("decoding %s did not end within its deadline (COLUMNIST_DECODE_TIMEOUT): its decoder is stuck; "
                     "%s; exiting with code %d (a worker's batch is not acked and comes again without it; a command "
                     "run again takes the rest). The stuck decode:\n%s", printable(name, 200), kept, DECODE_STUCK,
                     stack)
        flush_logs()
    finally:
        _exit(DECODE_STUCK)


def _list(path: Path, line: str, failed: list[BaseException]) -> None:
    """Append ``line`` to the list: a regular file of this user's (0600 in a 0700 folder when
    made here), never waiting on a FIFO that is there instead."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{printable(str(path))} is not a regular file")
            os.write(fd, line.encode("utf-8", "replace"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as err:  # noqa: BLE001 - said in the stuck decode's line
        failed.append(err)
