"""Each prompt through the text tower once per model: the embeddings are kept in the store.

A vocabulary applied by `tag`, again at the next run, by a restarted worker or by a second
worker encodes only the prompts no one has encoded before with that model (a ViT-B/32 text
tower costs 17-40 ms a prompt on these CPUs: 50 attributes x 5 templates were seconds at
every start). ``PromptCache`` is a text encoder (vocab.prompts.TextEncoder) in front of the
model's: what it finds in the store (or in memory) it does not encode.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.records import Counters
    from columnist.store import PromptStore


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
        if missing:
            encoded = self.encoder.encode_texts_in([text for _, text in missing], language)
            found.update(zip(missing, encoded, strict=True))
            if self.store is not None:
                self.store.save_prompt_embeddings(self.encoder.name, missing, encoded)
            if self.counters is not None:
                self.counters.prompts_encoded += len(missing)
        with self.lock:
            if len(self.memory) + len(found) <= self.MEMORY_LIMIT:
                self.memory.update(found)
        if not keys:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
