"""Moving a store from one model to another without losing a column (blue/green).

``begin`` names the target: from then on every batch is encoded with both models (the
serving one's rows and the target's, side by side in the same tables, the views reading the
serving one's). ``reembed`` reads every stored image again from its URI, the one time images
are decoded again (a new model needs the pixels through its own tower), in checkpointed
chunks that several workers split, and scores every applied vocabulary with the target's own
calibration; images it cannot read again are noted and keep the old model's scores.
``compare`` says what changes per attribute. ``cutover`` switches the views in one insert
once the target covers every image, ``retire`` deletes a model the store no longer serves.
The worker, `columnist model migrate`, `cutover` and `retire` all go through here.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from columnist.errors import ConfigurationError
from columnist.models.registry import lasting_ref
from columnist.pipeline import ModelOutputError, embed_and_score, sha256_of, take_batch
from columnist.records import Counters, ImageInput, ImageLimits, ModelState
from columnist.store import migration
from columnist.store.check import MISSING
from columnist.store.checkpoints import BUCKETS, Checkpoints, buckets_of, chunks_for

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.pipeline import Texts
    from columnist.store import Store
    from columnist.vocab.schema import Vocabulary

log = logging.getLogger("columnist.model_change")
T = TypeVar("T")


class MigrationRefused(ConfigurationError, ValueError):
    """A migration, cutover or retire that would lose or mix something; the message says what."""


class JobStopped(Exception):
    """A re-embed run ended on request (Reembedder.stopped): what it wrote stays."""


class NothingToDo(MigrationRefused):
    """The step was done already (by another worker, or before a restart read its event again)."""


class CoverageIncomplete(MigrationRefused):
    """A cutover before the target covers every image (``--force`` takes it anyway)."""


def current_state(store: "Store") -> ModelState:
    state = store.model_state()
    if state is None:
        raise MigrationRefused("no model has written to this store yet: tag or ingest images first")
    return state


def begin(store: "Store", target: "Encoder", target_ref: str) -> ModelState:
    """Name ``target`` as the store's next model and record what every applied vocabulary
    means for it (its calibration: a SigLIP's own bias, else the vocabulary's numbers); the
    state. Beginning the migration already running is a no-op; another one is refused."""
    state = current_state(store)
    if state.target == target.name:
        return state
    if state.target:
        raise MigrationRefused(f"the store is already moving from {state.serving!r} to {state.target!r}: cut over "
                               f"(columnist model cutover) or finish that one first")
    if target.name == state.serving:
        raise NothingToDo(f"the store already serves {target.name!r}")
    if target.name in store.embedding_models():  # the one served before, kept: its rows are another model's
        raise MigrationRefused(f"the store holds embeddings of a model named {target.name!r} already (one it "
                               f"served before): to serve those again, columnist model cutover --to {target.name}; "
                               f"for another model of that name, retire them first (columnist model retire "
                               f"{target.name}) or name the new model otherwise")
    _check_runs(target)
    target_ref = lasting_ref(target_ref)
    for vocab in store.applied_vocabularies():
        store.record_vocabulary_rows(vocab, target.name, target.calibration)
    state = replace(state, target=target.name, target_ref=target_ref)
    store.set_model_state(state)
    return state


def _check_runs(target: "Encoder") -> None:
    """A model folder's towers run and agree with its model.json (columnist model check),
    before the store records a migration to it: a broken target is refused, not half-begun."""
    directory, spec = getattr(target, "directory", None), getattr(target, "spec", None)
    if directory is not None and spec is not None:
        from columnist.models.layouts import check

        check(directory, spec)


@dataclass
class ReembedReport:
    images: int = 0
    """Images and videos embedded by the target in this run."""
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(image_id, reason) of those that could not be read again (noted; they keep the old scores)."""
    score_rows: int = 0
    chunks: int = 0
    chunks_skipped: int = 0


def unguarded(work: Callable[[], T]) -> T:
    return work()


class Reembedder:
    """One run of a model's re-embed job over a store: the chunks nobody did (store.checkpoints),
    then what is still lacking (images stored meanwhile by a writer that did not encode with
    the target yet). ``read(uri)`` returns an image's bytes (the worker's fetch policy, or the
    files a user can read when run by hand); ``vocabularies()`` the vocabularies to score with
    and the target's texts of them; ``guard(work)`` runs the scoring and writing of a batch (the
    worker: under its vocabulary lock, so no batch is scored with a vocabulary it left);
    ``chunks``: how many checkpointed chunks (0: about ROWS_PER_CHUNK images each)."""

    ROWS_PER_CHUNK = 10_000
    """A job is cut into chunks of about this many images (at most BUCKETS chunks): small jobs
    in one, large ones in pieces several workers split and a crash loses little of."""
    PAGE = 10_000
    """Images read from the store at once (ids and URIs), then embedded batch by batch."""

    def __init__(self, store: "Store", target: "Encoder",
                 vocabularies: Callable[[], Sequence[tuple["Vocabulary", "Texts"]]], read: Callable[[str], bytes],
                 limits: ImageLimits = ImageLimits(), batch_size: int = 32, counters: Counters | None = None,
                 guard: Callable[[Callable[[], int]], int] = unguarded, chunks: int = 0):
        self.store, self.target, self.vocabularies, self.read = store, target, vocabularies, read
        self.limits, self.batch_size, self.guard = limits, batch_size, guard
        self.counters = counters or Counters()
        chunks = max(1, min(BUCKETS, chunks)) if chunks else \
            chunks_for(migration.count_lacking(store, target.name), self.ROWS_PER_CHUNK)
        self.checkpoints = Checkpoints(store, "", migration.JOB_PREFIX + target.name, chunks)
        self.stopped = threading.Event()
        """Set to end the run between two batches (JobStopped)."""

    def run(self, start_at: int = 0, on_images: Callable[[int], None] | None = None) -> ReembedReport:
        report = ReembedReport(chunks=self.checkpoints.chunks)
        chunks = self.checkpoints.chunks

        def chunk(number: int) -> int:
            return self._embed_all(buckets_of(number, chunks), report, on_images)

        _, mine = self.checkpoints.run(start_at, chunk, fault="after_reembed_chunk")
        report.chunks_skipped = chunks - len(mine)
        self._embed_all(None, report, on_images)
        return report

    def catch_up(self) -> ReembedReport:
        """Only what is still lacking (the worker's pass while a migration runs)."""
        report = ReembedReport()
        self._embed_all(None, report, None)
        return report

    def remaining(self) -> int:
        """Images and videos the target still lacks (unreadable ones included)."""
        return migration.count_lacking(self.store, self.target.name)

    def _embed_all(self, buckets: list[int] | None, report: ReembedReport, on_images) -> int:
        """Every image the target lacks (in ``buckets``, or all): each one is embedded or noted
        as unreadable, so every page read makes progress."""
        rows = 0
        while True:
            page = migration.pending(self.store, self.target.name, buckets, limit=self.PAGE)
            for start in range(0, len(page), self.batch_size):
                if self.stopped.is_set():
                    raise JobStopped(f"the re-embed job for {self.target.name} was stopped")
                batch = page[start:start + self.batch_size]
                rows += self._embed(batch, report)
                if on_images:
                    on_images(len(batch))
            if len(page) < self.PAGE:
                return rows

    def _embed(self, batch: list[migration.Pending], report: ReembedReport) -> int:
        """Read, prepare, encode and score one batch with the target, and write its rows;
        what cannot be read or used again is noted (so the next query moves on)."""
        inputs, unreadable = [], []
        for item in batch:
            try:
                data = self.read(item.uri)
            except Exception as err:  # any failure of one image is that image's (noted with its reason)
                unreadable.append((item.image_id, item.uri, str(err)[:500]))
                continue
            if sha256_of(data) != item.sha256:
                unreadable.append((item.image_id, item.uri, "the file changed since it was stored (its sha256 "
                                                            "differs): publish it again"))
                continue
            inputs.append(ImageInput(data, item.sha256, f"image {item.image_id!r}", item.image_id, item.uri,
                                     item.collection))
        taken = take_batch(inputs, self.target, self.store, self.counters, self.limits)
        unreadable += [(inputs[p].image_id, inputs[p].uri, str(error)[:500]) for p, error in taken.failed]
        rows = 0
        if taken.prepared:
            def score_and_write() -> int:
                scored = embed_and_score(taken.prepared, self.vocabularies(), self.target)
                return self.store.write_model_rows(scored, new_frames_only=True)
            try:
                rows = self.guard(score_and_write)
            except ModelOutputError as err:
                unreadable += [(inputs[p].image_id, inputs[p].uri, str(err)[:500]) for p in taken.prepared_from]
            else:
                report.images += len(taken.prepared)
                report.score_rows += rows
                self.counters.reembedded += len(taken.prepared)
                self._forget_deleted([p.record.image_id for p in taken.prepared])
        migration.note_missing(self.store, self.target.name, unreadable)
        report.missing += [(image_id, reason) for image_id, _, reason in unreadable]
        return rows


    def _forget_deleted(self, image_ids: list[str]) -> None:
        """An image deleted after the job read its page got the target's rows all the same:
        they go again (a delete after this write has removed them with the rest)."""
        gone = migration.deleted_of(self.store, image_ids)
        if gone:
            self.store.delete_images(gone)


@dataclass
class Coverage:
    lacking: int
    """Images and videos without the model's embedding."""
    unscored: dict[str, int]
    """Per applied vocabulary, embedded images without a complete set of the model's scores."""

    @property
    def complete(self) -> bool:
        return not self.lacking and not any(self.unscored.values())


def coverage(store: "Store", model: str) -> Coverage:
    unscored = {}
    for vocab in store.applied_vocabularies():
        unscored[vocab.name] = int(store.scalar("SELECT count() " + MISSING, {"v": vocab.name, "m": model,
                                                                               "codes": list(vocab.codes)}))
    return Coverage(migration.count_lacking(store, model), unscored)


def cutover(store: "Store", to: str, force: bool = False) -> tuple[ModelState, Coverage]:
    """Serve ``to`` (the migration's target, or the previous model to undo a cutover): one
    insert, so a query sees one model's scores or the other's. Refused while ``to`` lacks
    images or scores, unless ``force`` (those images leave the views until they are embedded)."""
    to = lasting_ref(_named(to))
    state = current_state(store)
    if state.target and to in (state.target, state.target_ref):
        name, ref = state.target, state.target_ref
    elif to in (state.previous, state.previous_ref) and state.previous:
        name, ref = state.previous, state.previous_ref
    elif to in (state.serving, state.serving_ref):
        raise NothingToDo(f"the store already serves {state.serving!r}")
    else:
        raise MigrationRefused(f"{to!r} is neither the model the store moves to ({state.target or 'none'}) nor the "
                               f"one it served before ({state.previous or 'none'}): columnist model migrate --to {to}")
    found = coverage(store, name)
    if not found.complete and not force:
        raise CoverageIncomplete(_incomplete(store, name, found))
    new = ModelState(name, ref, previous=state.serving, previous_ref=state.serving_ref,
                     retired=tuple(m for m in state.retired if m != name))
    if state.target and state.target != name:  # undoing a cutover while another migration runs: keep it
        new = replace(new, target=state.target, target_ref=state.target_ref)
    store.set_model_state(new)
    return new, found


def _named(model: str) -> str:
    """A model named by a person or an event; blank would match a state's empty fields."""
    if not model or not model.strip():
        raise MigrationRefused("name the model (its name or folder)")
    return model


def _incomplete(store: "Store", model: str, found: Coverage) -> str:
    noted, examples = migration.missing(store, model, limit=5)
    parts = [f"{found.lacking} images lack the embedding of {model}"] if found.lacking else []
    parts += [f"{n} images lack the scores of {model} for {name}" for name, n in found.unscored.items() if n]
    unreadable = f" ({noted} could not be read again: " + "; ".join(f"{i}: {r}" for i, r in examples) + ")" \
        if noted else ""
    return (", ".join(parts) + unreadable + f": let the migration finish (columnist model migrate --to {model}), "
            "or --force, and those images leave the views until they are embedded")


@dataclass
class RetireReport:
    rows: dict[str, int]
    freed_bytes: int


def retire(store: "Store", model: str) -> RetireReport:
    """Delete every row of ``model``, which the store must no longer serve; retiring the model
    the store moves to abandons that migration (the views never read it)."""
    model = lasting_ref(_named(model))
    state = current_state(store)
    if model in (state.serving, state.serving_ref):
        raise MigrationRefused(f"{model!r} is the model the store serves: cut over to another first")
    if state.target and model in (state.target, state.target_ref):  # the migration abandoned: its rows go
        model = state.target
        state = replace(state, target="", target_ref="")
        store.set_model_state(state)
        if model not in store.embedding_models():
            return RetireReport({}, 0)
    name = state.previous if model in (state.previous, state.previous_ref) and state.previous else model
    if name not in store.embedding_models():
        raise (NothingToDo if name in state.retired else MigrationRefused)(f"the store holds no rows of model {model!r}")
    before = migration.bytes_on_disk(store)
    rows = migration.delete_model_rows(store, name)
    store.set_model_state(replace(state, previous="" if name == state.previous else state.previous,
                                  previous_ref="" if name == state.previous else state.previous_ref,
                                  retired=tuple(dict.fromkeys((*state.retired, name)))))
    return RetireReport(rows, max(0, before - migration.bytes_on_disk(store)))
