"""Each prompt through the text tower once per model: the embeddings are kept in the store.

A vocabulary applied by `tag`, again at the next run, by a restarted worker or by a second
worker encodes only the prompts no one has encoded before with that model (a ViT-B/32 text
tower costs 17-40 ms a prompt on these CPUs: 50 attributes x 5 templates were seconds at
every start). ``PromptCache`` is a text encoder (vocab.prompts.TextEncoder) in front of the
model's: what it finds in the store (or in memory) it does not encode. A large model's
prompts are also kept for every store of this user (``SharedPrompts``), so a new store's
first run does not encode them again either.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.records import Counters
    from columnist.store import PromptStore


log = logging.getLogger(__name__)

SHARED = Path.home() / ".cache" / "columnist" / "prompts"


class SharedPrompts:
    """Prompt embeddings of one text tower (``Encoder.shared_prompts_key``: its model's name,
    then its content) kept for every store of this user, in one SQLite file; a new version of
    the model replaces the file of the one before. Whatever is wrong with the file
    (unreadable, damaged, locked, full, rows of another shape) only means encoding again."""

    MAX_ROWS = 200_000
    """About 400 MB at 512 dimensions; beyond, nothing more is kept."""

    def __init__(self, key: str, dim: int, folder: Path | None = None):
        self.path, self.dim = (folder or SHARED) / f"{key}.sqlite3", dim

    def get(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], "np.ndarray"]:
        import numpy as np

        found = {}
        if not self.path.is_file():  # none yet; or a FIFO, which SQLite would wait on for ever
            return found
        try:
            with closing(sqlite3.connect(self.path.as_uri() + "?mode=ro", timeout=1, uri=True)) as db:
                for language, text in keys:
                    row = db.execute("SELECT embedding FROM prompt WHERE language = ? AND text = ?",
                                     (language, text)).fetchone()
                    blob = row[0] if row else None
                    vector = np.frombuffer(blob, np.float32) if isinstance(blob, bytes) and len(blob) == 4 * self.dim \
                        else None
                    if vector is not None and np.isfinite(vector).all():
                        found[(language, text)] = vector
        except sqlite3.Error as err:  # no file yet, or one that cannot be read: encoded again
            log.debug("prompts kept in %s not read: %s", self.path, err)
        return found

    def put(self, keys: Sequence[tuple[str, str]], vectors: "np.ndarray") -> None:
        import numpy as np

        rows = [(language, text, np.asarray(v, np.float32).tobytes()) for (language, text), v in zip(keys, vectors)]
        if self.path.exists() and not self.path.is_file():
            log.info("prompt embeddings not kept: %s is not a regular file", self.path)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # a new file for this model: its older versions' files go
                self._remove_older_versions()
            with closing(sqlite3.connect(self.path, timeout=1)) as db, db:
                db.execute("CREATE TABLE IF NOT EXISTS prompt (language TEXT, text TEXT, embedding BLOB, "
                           "PRIMARY KEY (language, text))")
                if db.execute("SELECT count(*) FROM prompt").fetchone()[0] + len(rows) <= self.MAX_ROWS:
                    db.executemany("INSERT OR REPLACE INTO prompt VALUES (?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as err:
            log.info("prompt embeddings not kept in %s: %s", self.path, err)

    def _remove_older_versions(self) -> None:
        """Files of the same model name (the key's first part) with other content."""
        name = self.path.stem.split("-")[0]
        for older in self.path.parent.glob(f"{name}-*.sqlite3"):
            if older != self.path:
                older.unlink(missing_ok=True)


class PromptCache:
    """The model's text tower, through the store's prompt embeddings. ``counters``:
    ``prompts_encoded`` counts what really went through the tower."""

    MEMORY_LIMIT = 50_000
    """Prompts kept in memory as well (about 100 MB at 512 dimensions)."""

    def __init__(self, encoder: "Encoder", store: "PromptStore | None", counters: "Counters | None" = None):
        self.encoder, self.store, self.counters = encoder, store, counters
        self.dim, self.reads_language = encoder.dim, encoder.reads_language
        self.memory: dict[tuple[str, str], "np.ndarray"] = {}
        self.lock = threading.Lock()
        key = encoder.shared_prompts_key
        self.shared = SharedPrompts(key, encoder.dim) if key else None

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray":
        return self.encode_texts_in(texts, None)

    def encode_texts_in(self, texts: Sequence[str], language: str | None) -> "np.ndarray":
        import numpy as np

        keys = [(language or "", text) for text in texts]
        with self.lock:
            found = {k: self.memory[k] for k in keys if k in self.memory}
        wanted = [k for k in dict.fromkeys(keys) if k not in found]
        if wanted and self.store is not None:
            found.update(self.store.prompt_embeddings(self.encoder.name, wanted))
        missing = [k for k in wanted if k not in found]
        kept = self.shared.get(missing) if missing and self.shared is not None else {}
        if kept and self.store is not None:  # the store holds what its processes use
            self.store.save_prompt_embeddings(self.encoder.name, list(kept), np.stack(list(kept.values())))
        found.update(kept)
        missing = [k for k in missing if k not in kept]
        if missing:
            encoded = self.encoder.encode_texts_in([text for _, text in missing], language)
            found.update(zip(missing, encoded, strict=True))
            if self.store is not None:
                self.store.save_prompt_embeddings(self.encoder.name, missing, encoded)
            if self.shared is not None:
                self.shared.put(missing, encoded)
            if self.counters is not None:
                self.counters.prompts_encoded += len(missing)
        with self.lock:
            if len(self.memory) + len(found) <= self.MEMORY_LIMIT:
                self.memory.update(found)
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
