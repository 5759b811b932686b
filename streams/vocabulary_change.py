"""Moving a store from one vocabulary to the next, without decoding a single image.

Diff the two documents, encode only the new or changed prompts with the text tower, let the
store replay its stored embeddings for the affected attributes (in-engine, checkpointed),
then record the new vocabulary as applied. The worker, `columnist tag` and `columnist
replay` all go through here, and so do its guards: a vocabulary's version never goes
backwards, and a version number never means two different documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Collection, Sequence

from columnist.errors import ConfigurationError
from columnist.prompt_cache import PromptCache
from columnist.vocab.diff import VocabularyDiff, diff_vocabularies
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import Vocabulary

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.store import ChangeStore, VocabularyLedger
    from columnist.store.replay import ReplayReport
    from columnist.vocab.prompts import TextEncoder


class VocabularyConflict(ConfigurationError, ValueError):
    """A document that would move a vocabulary backwards; the message names both versions."""


def check_newer(old: Vocabulary | None, new: Vocabulary) -> None:
    """Refuse ``new`` if it is older than ``old``, or the same version with other content."""
    if old is None:
        return
    if new.version < old.version:
        raise VocabularyConflict(f"vocabulary {new.name!r} v{new.version} is older than the applied v{old.version}: "
                                 "a version never goes backwards (push a higher version to change it)")
    if new.version == old.version and new.content_hash() != old.content_hash():
        raise VocabularyConflict(f"vocabulary {new.name!r} v{new.version} differs from the applied v{old.version} "
                                 "of the same number: give the changed document a higher version")


@dataclass
class ApplyReport:
    diff: VocabularyDiff
    replay: "ReplayReport"
    stored_scores: int
    """Scores of the re-scored attributes written: stored images x attributes (each chunk's
    images counted with FINAL; a second FINAL count over every score took a second at 1M x 10)."""


@dataclass
class Change:
    """A planned move from one version to the next: what to re-score, with which texts."""

    new: Vocabulary
    diff: VocabularyDiff
    new_texts: dict[str, "np.ndarray"]
    """The text embeddings of the re-scored base attributes (encoded for this change)."""
    texts: dict[str, "np.ndarray"]
    """Every base attribute's text embedding: what ingest scores with after the switch."""


def plan_change(store: "ChangeStore", encoder: "Encoder", old: Vocabulary | None, new: Vocabulary,
                old_texts: dict[str, "np.ndarray"] | None = None, prompts: "TextEncoder | None" = None) -> Change:
    """Check ``new`` against the applied version (VocabularyConflict), diff, and encode only the
    new or changed prompts; nothing is written but prompt embeddings."""
    recorded = store.applied_vocabulary(new.name)  # another worker may have gone further meanwhile
    if recorded is not None and (old is None or recorded.version > old.version):
        old, old_texts = recorded, None
    check_newer(old, new)
    diff = diff_vocabularies(old, new, encoder.calibration)
    new_texts = text_embeddings(prompts or encoder, new, diff.rescore)
    missing = [a.code for a in new.attributes if a.code not in new_texts and not (old_texts and a.code in old_texts)]
    kept = {a.code: old_texts[a.code] for a in new.attributes if old_texts and a.code in old_texts}
    if missing:  # a worker that took up the store's version without its texts
        kept.update(text_embeddings(prompts or encoder, new, missing))
    return Change(new, diff, new_texts, {**kept, **new_texts})


def carry_out(store: "ChangeStore", encoder: "Encoder", change: Change, chunks: int,
              on_chunk: Callable[[int, int], None] | None = None, default_view: bool = False,
              start_at: int = 0, alongside: Sequence[tuple["Encoder", Change]] = ()) -> ApplyReport:
    """Replay stored embeddings for the changed attributes (checkpointed chunks), then record
    the new version as applied and regenerate its views. ``alongside``: the model a migration
    moves to, with its own plan: replayed and recorded first (a vocabulary change reaches both)."""
    new = change.new
    for other, plan in alongside:
        store.replayer(other.name, other.logit_scale, other.source, chunks, model_calibration=other.calibration) \
            .run(new, plan.diff, plan.new_texts, None, start_at)
        store.record_vocabulary_rows(new, other.name, other.calibration)
    replayer = store.replayer(encoder.name, encoder.logit_scale, encoder.source, chunks,
                              model_calibration=encoder.calibration)
    report = replayer.run(new, change.diff, change.new_texts, on_chunk, start_at)
    store.apply_vocabulary(new, encoder.name, default_view, model_calibration=encoder.calibration)
    return ApplyReport(change.diff, report, report.score_rows)


def give_up(store: "ChangeStore", encoder: "Encoder", failed: Vocabulary, kept: Vocabulary,
            kept_texts: dict[str, "np.ndarray"], default_view: bool = False) -> int | None:
    """After a change to ``failed`` that did not complete, once ingest is back on ``kept``: no
    image keeps a score of a version the store never applied. What the change wrote for
    ``encoder``'s model (its replay's finished chunks, the batches ingested while it was in
    use) is scored again with ``kept`` from the stored embeddings (Replayer.restore), and
    ``kept``'s views are made again (the change may have replaced them just before it
    failed). The images restored; None, and nothing done, if the store has moved past ``kept``
    meanwhile (another worker applied ``failed`` or a later version)."""
    recorded = store.applied_vocabulary(kept.name)
    if recorded is not None and recorded.version > kept.version:
        return None
    back = diff_vocabularies(failed, kept, encoder.calibration)
    replayer = store.replayer(encoder.name, encoder.logit_scale, encoder.source, 0,
                              model_calibration=encoder.calibration)
    images = replayer.restore(kept, kept_texts, failed, back.rescore,
                              diff_vocabularies(kept, failed, encoder.calibration).rescore, back.removed, back.added)
    store.create_columns_view(kept, f"columns_{kept.name}")
    if default_view:
        store.create_columns_view(kept, "image_columns")
    return images


def apply_vocabulary(
    store: "ChangeStore", encoder: "Encoder", old: Vocabulary | None, new: Vocabulary, chunks: int,
    old_texts: dict[str, "np.ndarray"] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    default_view: bool = False,
    start_at: int = 0,
    prompts: "TextEncoder | None" = None,
    target: "Encoder | None" = None,
) -> ApplyReport:
    """Move from ``old`` to ``new`` in one go (tag, replay, a worker's start): plan_change,
    then carry_out. The worker switches its ingest path between the two (Service).

    ``default_view``: the vocabulary is the default one, whose view is also ``image_columns``.
    ``start_at``: where this worker starts in the replay's ring of chunks (Replayer.run).
    ``prompts``: the text encoder (a PromptCache in front of ``encoder``'s text tower).
    ``target``: the model the store is moving to, if it is (its scores change too).
    """
    change = plan_change(store, encoder, old, new, old_texts, prompts)
    alongside = [(target, plan_change(store, target, old, new, None, PromptCache(target, store)))] if target else []
    return carry_out(store, encoder, change, chunks, on_chunk, default_view, start_at, alongside)


def scored_vocabularies(store: "VocabularyLedger", accepted: Collection[str] = (), keep: str | None = None) -> list[Vocabulary]:
    """The vocabularies new images are scored with: every one applied to the store, or only
    the ``accepted`` names when given (``keep``, the configured default, always)."""
    return [v for v in store.applied_vocabularies() if not accepted or v.name in accepted or v.name == keep]


def ensure_applied(store: "ChangeStore", encoder: "Encoder", vocab: Vocabulary, default_view: bool,
                   prompts: "TextEncoder | None" = None, target: "Encoder | None" = None) -> ApplyReport | None:
    """Apply ``vocab`` unless the store has this very document applied (VocabularyConflict
    if it is older than the applied one); the report of what it did, or None."""
    current = store.applied_vocabulary(vocab.name)
    if current is not None and current.content_hash() == vocab.content_hash():
        return None
    return apply_vocabulary(store, encoder, current, vocab, chunks=0, default_view=default_view, prompts=prompts,
                            target=target)
