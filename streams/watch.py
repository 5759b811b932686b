"""`columnist watch`: folders that publish themselves.

Every file of a kind columnist reads that appears or changes under the folders is published as
an ingest event once it has stopped changing (its size and modification time the same for
``settle`` seconds: a copy still being written is not taken half-way); a file deleted, or
moved out, is published as a delete event (the worker forgets the image's rows); a move within
the folders is a delete and a new image (its content is known: nothing is encoded again).

What was published is remembered in a small SQLite file per set of folders (path, size,
modification time, image id), so a restart publishes only what changed while it was away, and
the deletes of files that went. Image ids are the ones `tag` and `publish images` make.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from columnist.printable import printable
from columnist.tagger import SUPPORTED, absolute, image_id, walk

if TYPE_CHECKING:
    from columnist.settings import Settings

log = logging.getLogger("columnist.watch")

MAX_PENDING = 100_000
"""Files waiting to settle at once; beyond, the watcher looks over the folders again (as at
start) once the waiting ones are published, which finds the rest."""
STATE_DIR = Path.home() / ".columnist" / "watch"


@dataclass
class Published:
    images: int = 0
    deleted: int = 0
    skipped: Counter = field(default_factory=Counter)
    """Files not of a kind columnist reads, counted by suffix."""


class WatchState:
    """What was published, per file (SQLite: a crash loses at most the last batch's record,
    which is published again: events are idempotent)."""

    def __init__(self, path: Path):
        from columnist.errors import ConfigurationError

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and not path.is_file():
                raise sqlite3.DatabaseError("not a file")
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, image_id TEXT NOT NULL, "
                            "size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL)")
            shape = self.db.execute("SELECT type FROM sqlite_master WHERE name = 'files'").fetchone()
            columns = [row[1] for row in self.db.execute("PRAGMA table_info(files)")]
            if shape is None or shape[0] != "table" or columns != ["path", "image_id", "size", "mtime_ns"]:
                raise sqlite3.DatabaseError("its files table is not the one columnist writes")
            self.db.execute("CREATE INDEX IF NOT EXISTS files_by_image_id ON files (image_id)")
        except (sqlite3.Error, OSError) as error:
            raise ConfigurationError(f"{path}: not a watch state ({error}); move it away and the next start "
                                     "publishes the folders again (events are idempotent)") from None
        self.lock = threading.Lock()

    def known(self) -> dict[str, tuple[str, int, int]]:
        with self.lock:
            return {p: (i, s, m) for p, i, s, m in self.db.execute("SELECT path, image_id, size, mtime_ns FROM files")}

    def get(self, path: str) -> tuple[str, int, int] | None:
        with self.lock:
            row = self.db.execute("SELECT image_id, size, mtime_ns FROM files WHERE path = ?", (path,)).fetchone()
        return tuple(row) if row else None

    def holders(self, image_id_: str) -> list[str]:
        """The paths remembered under ``image_id_``: one file's, or one file's under several
        paths (a folder and a link to it); more files only in a state an older watch wrote."""
        with self.lock:
            return [path for (path,) in self.db.execute("SELECT path FROM files WHERE image_id = ?", (image_id_,))]

    def under(self, folder: str) -> list[tuple[str, str]]:
        """(path, image id) of every file remembered under ``folder``."""
        prefix = folder.rstrip("/") + "/"
        with self.lock:
            return list(self.db.execute("SELECT path, image_id FROM files WHERE substr(path, 1, ?) = ?",
                                        (len(prefix), prefix)))

    def record(self, published: Iterable[tuple[str, str, int, int]], forgotten: Iterable[str]) -> None:
        with self.lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", list(published))
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in forgotten])

    def close(self) -> None:
        self.db.close()


def state_path(folders: Sequence[Path], collection: str) -> Path:
    """One state file per set of folders and collection."""
    key = "\n".join(sorted(str(absolute(f)) for f in folders)) + "\n" + collection
    return STATE_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sqlite"


class Watcher:
    """Publishes a set of folders' changes (``send(images, deletes)`` publishes: the CLI's is
    Kafka's producer; tests give their own)."""

    def __init__(self, folders: Sequence[Path], collection: str, state: WatchState,
                 send: Callable[[list[tuple[str, Path]], list[str]], None], settle: float = 2.0):
        self.folders = sorted({absolute(f) for f in folders}, key=lambda f: (len(f.parts), str(f)))
        """Outermost first: a file under two of them (one inside the other) takes its id from
        the outer one, whatever the order they were given in (their state is one file)."""
        self.collection, self.state, self.send, self.settle = collection, state, send, settle
        self.pending: dict[str, tuple[int, int, float]] = {}
        """path -> (size, mtime_ns, when first seen so): files waiting to stop changing."""
        self.overflowed = False
        """More files changed than MAX_PENDING: look over the folders again once they settle."""
        self.totals = Published()

    def folder_of(self, path: Path) -> Path | None:
        return next((f for f in self.folders if path == f or path.is_relative_to(f)), None)

    def catch_up(self) -> Published:
        """At start: publish what changed or appeared while nobody watched, and delete what went."""
        known, self.totals.skipped = self.state.known(), Counter()
        found = {str(path): path for folder in self.folders for path in self._files_under(folder)}
        changed = [path for key, path in found.items()
                   if self._differs(path, known.get(key)) or (key in known and known[key][0] != self._id_now(path))]
        # (the second: an older watch gave it another id, a folder inside another taking its own)
        gone = [key for key in known if key not in found and self.folder_of(Path(key)) is not None]
        self._publish(changed, gone)
        return self.totals

    def _files_under(self, folder: Path) -> list[Path]:
        """The files of a kind columnist reads under ``folder`` (tagger.walk; links are not
        followed: a link to a folder may lead anywhere, or back here); the rest counted."""
        found = walk([folder], follow_links=False)
        self.totals.skipped.update(found.skipped)
        return [path for _, path in found.files]

    def _id_now(self, path: Path) -> str | None:
        """The id the file at ``path`` has under these folders (None outside them)."""
        folder = self.folder_of(path)
        return image_id(path, folder, self.collection) if folder is not None else None

    def _differs(self, path: Path, was: tuple[str, int, int] | None) -> bool:
        try:
            info = path.stat()
        except OSError:
            return False
        return was is None or (was[1], was[2]) != (info.st_size, info.st_mtime_ns)

    def changed(self, events: Iterable[tuple[str, str]]) -> None:
        """File-system events: ('added' | 'modified' | 'deleted', path). A path's events come
        as an unordered set (a file deleted and written again within one debounce is both), so
        what the path is now decides: a file waits to settle, a folder (moved in) is looked
        over, nothing there is a deletion."""
        gone = []
        for raw in {raw for _, raw in events}:
            path = Path(raw)
            if self.folder_of(path) is None or path.name.startswith(".") or path.is_symlink():
                continue
            if path.is_dir():
                if self.state.get(raw) is not None:  # a file that became a folder
                    gone.append(raw)
                for inner in self._files_under(path):
                    self._wait_for(str(inner))
            elif path.exists():
                if path.suffix.lower() in SUPPORTED:
                    self._wait_for(raw)
            else:
                self.pending.pop(raw, None)
                if self.state.get(raw) is not None:
                    gone.append(raw)
                else:  # a folder deleted or moved away: every file remembered under it
                    gone += [p for p, _ in self.state.under(raw)]
        if gone:
            self._publish([], gone)

    def _wait_for(self, raw: str) -> None:
        if raw in self.pending or len(self.pending) < MAX_PENDING:
            self.pending.setdefault(raw, (-1, -1, time.monotonic()))
        else:
            self.overflowed = True

    def tick(self) -> None:
        """Publish the waiting files that have not changed for ``settle`` seconds."""
        now, ready = time.monotonic(), []
        for raw, (size, mtime, since) in list(self.pending.items()):
            try:
                info = os.lstat(raw)
            except OSError:
                del self.pending[raw]  # gone before it settled: nothing was published
                continue
            if not stat.S_ISREG(info.st_mode):  # a FIFO, a device, a link or a folder by now: never an image
                del self.pending[raw]
                continue
            if (info.st_size, info.st_mtime_ns) != (size, mtime):
                self.pending[raw] = (info.st_size, info.st_mtime_ns, now)
            elif now - since >= self.settle:  # a regular file (lstat above)
                ready.append(Path(raw))
                del self.pending[raw]
        if ready:
            self._publish([p for p in ready if self._differs(p, self.state.get(str(p)))], [])
        if self.overflowed and not self.pending:
            self.overflowed = False
            log.info("more than %d files changed at once: looking over the folders again", MAX_PENDING)
            self.catch_up()

    def _publish(self, files: list[Path], gone: list[str]) -> None:
        going = set(gone)
        images = self._without_clashes(files, going)
        released = [(raw, was[0]) for raw in gone if (was := self.state.get(raw)) is not None]
        released += [(str(path), was[0]) for identifier, path in images  # a file whose id changed lets the old go
                     if (was := self.state.get(str(path))) is not None and was[0] != identifier]
        gone_ids = self._ids_let_go(released, images)
        if not images and not gone_ids:
            return
        self.send(images, gone_ids)
        stats = []
        for identifier, path in images:
            try:
                info = path.stat()
            except OSError:
                continue
            stats.append((str(path), identifier, info.st_size, info.st_mtime_ns))
        self.state.record(stats, gone)
        self.totals.images += len(images)
        self.totals.deleted += len(gone_ids)
        for identifier, _ in images:
            log.info("published %s", identifier)
        for identifier in gone_ids:
            log.info("published the deletion of %s", identifier)

    def _ids_let_go(self, released: list[tuple[str, str]], images: list[tuple[str, Path]]) -> list[str]:
        """Of the ids ``released`` (path, id: files gone, and the former ids of files whose id
        changed), those no file holds now, to delete. An id published again in this change (a
        file moved to the path another folder gives the same id) is kept; one another file on
        disk holds under today's rules (the same file through a link, a state an older watch
        wrote) is published again from that file instead (appended to ``images``)."""
        published = {identifier for identifier, _ in images}
        letting_go = {raw for raw, _ in released}
        gone_ids = []
        for _, old in released:
            if old in published:
                continue
            still = [Path(p) for p in self.state.holders(old)
                     if p not in letting_go and Path(p).is_file() and self._id_now(Path(p)) == old]
            if still:
                images.append((old, still[0]))
            else:
                gone_ids.append(old)
            published.add(old)
        return gone_ids

    def _without_clashes(self, files: list[Path], going: set[str]) -> list[tuple[str, Path]]:
        """(image id, file) of each file, except a file whose id another file on disk holds
        (two folders under one collection with the same relative path): publishing it would
        replace the other's image, and deleting either would forget both. It is named and
        counted, and published once the other is gone (at the next start, or when it changes).
        The same file reached by two paths (a folder and a link to it) holds its id under both."""
        images: list[tuple[str, Path]] = []
        taken: dict[str, str] = {}
        for path in files:
            folder = self.folder_of(path)
            if folder is None:
                continue
            image_id_ = image_id(path, folder, self.collection)
            others = [p for p in [taken.get(image_id_), *self.state.holders(image_id_)]
                      if p is not None and p != str(path) and p not in going and self._id_now(Path(p)) == image_id_]
            other = next((p for p in others if _another_file(p, path)), None)
            if other is not None:
                log.warning("not published: %s has the image id %s of %s too (watch those folders separately, "
                            "each with its own --collection)", printable(path), printable(image_id_), printable(other))
                self.totals.skipped["(image id of another file)"] += 1
                continue
            taken[image_id_] = str(path)
            images.append((image_id_, path))
        return images


def _another_file(other: str, path: Path) -> bool:
    """Whether ``other`` is a file on disk that is not ``path``'s (a file gone meanwhile holds
    no id: its deletion is on its way, and publishes this one again)."""
    try:
        return not os.path.samefile(other, path)
    except OSError:
        return False


def run(folders: Sequence[Path], collection: str, settings: "Settings", settle: float = 2.0,
        stop: threading.Event | None = None, on_ready: Callable[[Published], None] | None = None) -> Published:
    """Catch up, then watch until ``stop`` is set (or Ctrl-C)."""
    import watchfiles

    from columnist.kafka.publish import publish_changes

    state = WatchState(state_path(folders, collection))
    watcher = Watcher(folders, collection, state, lambda images, gone: publish_changes(images, gone, settings,
                                                                                     collection), settle)
    try:
        caught = watcher.catch_up()
        if on_ready:
            on_ready(caught)
        kinds = {watchfiles.Change.added: "added", watchfiles.Change.modified: "modified",
                 watchfiles.Change.deleted: "deleted"}
        for changes in watchfiles.watch(*watcher.folders, stop_event=stop, yield_on_timeout=True, rust_timeout=500,
                                        debounce=400, step=100, raise_interrupt=False):
            watcher.changed((kinds[kind], path) for kind, path in changes)
            watcher.tick()
    finally:
        state.close()
    return watcher.totals
