"""Moving a store from one vocabulary to the next, without decoding a single image.

Diff the two documents, encode only the new or changed prompts with the text tower, let the
store replay its stored embeddings for the affected attributes (in-engine, checkpointed),
then record the new vocabulary as applied. The worker, `columnist replay` and `columnist
backfill` all go through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from columnist.vocab.diff import VocabularyDiff
from columnist.vocab.schema import Vocabulary

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.streams.store import Store
    from columnist.streams.store.replay import ReplayReport


@dataclass
class ApplyReport:
    diff: VocabularyDiff
    replay: "ReplayReport"
    stored_scores: int
    """Scores of the re-scored attributes in the store afterwards (counted with FINAL)."""


def apply_vocabulary(
    store: "Store", encoder: "Encoder", old: Vocabulary | None, new: Vocabulary, chunks: int,
    old_texts: dict[str, "np.ndarray"] | None = None,
    on_switch: Callable[[dict[str, "np.ndarray"]], None] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> ApplyReport:
    """Move from ``old`` to ``new``: encode only the new or changed prompts, replay stored
    embeddings for the affected attributes, then record ``new`` as applied.

    ``on_switch(texts)`` receives every base attribute's text embedding once they are
    known, before the replay starts (the worker switches its ingest path there).
    """
    from columnist.vocab.diff import diff_vocabularies
    from columnist.vocab.prompts import text_embeddings

    diff = diff_vocabularies(old, new)
    new_texts = text_embeddings(encoder, new, diff.rescore)
    if on_switch:
        kept = {a.code: old_texts[a.code] for a in new.attributes
                if old_texts and a.code in old_texts and a.code not in new_texts}
        on_switch({**kept, **new_texts})
    replayer = store.replayer(encoder.name, encoder.logit_scale, encoder.source, chunks)
    report = replayer.run(new, diff, new_texts, on_chunk)
    store.apply_vocabulary(new, encoder.name)
    return ApplyReport(diff, report, store.count_scores(list(diff.rescore)))
