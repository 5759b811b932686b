"""The batch path without Kafka: tag files and folders with the same pipeline and store.

What an image id is: the file's URI (``file:///photos/a/IMG_0001.jpg``) by default, so the
same file keeps its id on every run and two folders' ``IMG_0001.jpg`` never collide; with a
collection, ``<collection>/<path relative to the folder given>``. `columnist publish images`
makes the same ids.

A re-run is incremental: a file whose id is stored with the same content (sha256) is skipped
("already stored"), content already stored under another id reuses its embedding, and only
new content is decoded and encoded. ``force`` encodes everything again. Every vocabulary
applied to the store is scored, so none of them misses the new images.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import closing
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TypeVar

from columnist.files import as_text, read_regular_file
from columnist.models import media
from columnist.printable import printable
from columnist.pipeline import (SecondModel, TakenBatch, embed_and_score_isolating, encoded_count, sha256_of,
                                take_batch)
from columnist.prompt_cache import PromptCache
from columnist.records import Counters, ImageInput, ImageLimits, ScoredBatch
from columnist.store import check_model
from columnist.store.check import delete_orphans
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import Vocabulary
from columnist.vocabulary_change import ApplyReport, ensure_applied, scored_vocabularies

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.records import ScoredBatch
    from columnist.store import Store

T = TypeVar("T")
R = TypeVar("R")

SUPPORTED = set().union(*media.SUFFIXES.values())
"""Suffixes of what `tag` and `publish images` take from a folder: stills, camera RAW, video."""


@dataclass
class TagRun:
    """What a `tag` run did, filled as it goes (an interrupted run still says what it stored)."""

    counters: Counters = field(default_factory=Counters)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) of every file that could not be used."""
    applied: ApplyReport | None = None
    """The vocabulary change this run applied first (None: it was applied already)."""

    @property
    def score_rows(self) -> int:
        """Scores written: for the new images, and by the vocabulary change for stored ones."""
        return self.counters.score_rows + (self.applied.stored_scores if self.applied else 0)


def absolute(path: Path) -> Path:
    """The path made absolute as given: symbolic links are kept (the worker checks where they
    lead against its roots; an id or URI never names a link's target instead)."""
    return Path(os.path.abspath(path))


def image_id(file: Path, folder: Path | None, collection: str) -> str:
    """The file's URI, or ``collection/relative path`` when a collection namespaces ids (a
    name's bytes that are not UTF-8 written as escapes: an id is text, whatever the disk holds)."""
    if not collection:
        return absolute(file).as_uri()
    relative = absolute(file).relative_to(absolute(folder)) if folder else Path(file.name)
    return as_text(f"{collection}/{relative.as_posix()}")


@dataclass
class Walk:
    files: list[tuple[str, Path]] = field(default_factory=list)
    """(image_id, file) of every file to take."""
    skipped: Counter = field(default_factory=Counter)
    """Files not taken, counted by why: their suffix (not a kind columnist reads), or a reason
    in parentheses (hidden, a link, given twice, ...)."""
    clashes: list[tuple[Path, str, Path]] = field(default_factory=list)
    """(file, image_id, the file taken under that id): another file of this walk has its id
    (two folders under one collection, say); not taken, or one would replace the other."""

    _taken: dict[str, Path] = field(default_factory=dict, init=False, repr=False, compare=False)

    def take(self, image_id_: str, path: Path) -> None:
        """``path`` under ``image_id_``, unless an id clash (the same file given twice is taken once)."""
        taken = self._taken.get(image_id_)
        if taken is None:
            self._taken[image_id_] = path
            self.files.append((image_id_, path))
        elif absolute(taken) == absolute(path):
            self.skipped["(given more than once)"] += 1
        else:
            self.clashes.append((path, image_id_, taken))

    def clash_reasons(self) -> list[tuple[str, str]]:
        """(file, why it was not taken), as a run's failures are listed."""
        return [(str(path), f"not taken: its image id {printable(image_id_)} is the id of {printable(taken)} too "
                            "(tag those folders separately, each with its own --collection)")
                for path, image_id_, taken in self.clashes]

    def kinds(self) -> Counter:
        """The files to take, counted by kind (image, raw, video)."""
        return Counter(media.suffix_kind(path.name) or media.IMAGE for _, path in self.files)


def walk(paths: Iterable[str | Path], collection: str = "", follow_links: bool = True) -> Walk:
    """Files of a kind columnist reads in folders (walked recursively; hidden files left out,
    and links to files too unless ``follow_links``), and any file named directly;
    what else the folders hold is counted, and files whose ids clash named, not taken."""
    found = Walk()
    for path in map(Path, paths):
        if not path.is_dir():
            found.take(image_id(path, None, collection), path)
            continue
        for file in sorted(path.rglob("*")):
            if file.name.startswith("."):  # as `columnist watch` leaves them (a hidden folder is walked)
                if not file.is_dir():
                    found.skipped["(hidden)"] += 1
                continue
            if not follow_links and file.is_symlink():
                found.skipped["(link, not followed)"] += 1
                continue
            if not file.is_file():  # a folder is walked; a pipe, socket, device or broken link is counted
                if file.is_symlink() and file.is_dir():  # rglob does not go into a link to a folder
                    found.skipped["(link to a folder, not walked: name it to tag it)"] += 1
                elif not file.is_dir():
                    found.skipped["(not a regular file)"] += 1
                continue
            if file.suffix.lower() in SUPPORTED:
                found.take(image_id(file, path, collection), file)
            else:
                found.skipped[file.suffix.lower() or "(no suffix)"] += 1
    return found


def find_images(paths: Iterable[str | Path], collection: str = "") -> list[tuple[str, Path]]:
    """(image_id, file) pairs of ``walk``."""
    return walk(paths, collection).files


def skipped_summary(skipped: Counter) -> str:
    """'3 .psd, 2 .txt' for the files a walk did not take ('' when none)."""
    return ", ".join(f"{count} {printable(suffix, 40)}" for suffix, count in skipped.most_common())


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _one_ahead(take: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """``take`` of each item, the next one computed on a thread of its own while the caller
    works on this one: a batch is read and decoded while the one before it encodes (the
    tower's threads and Pillow's share the cores; decoding first, then encoding, left the
    tower idle for every batch's decode and write)."""
    with ThreadPoolExecutor(1, thread_name_prefix="columnist-prepare") as ahead:
        pending = ahead.submit(take, items[0]) if items else None
        for following in [*items[1:], None]:
            done = pending.result()
            pending = ahead.submit(take, following) if following is not None else None
            yield done


class _OneBehind:
    """Runs each write on a thread of its own while the caller goes on to the next batch: one
    write at a time, in order; a write's failure is raised at the next submit or at the end
    (the store's insert and the tower share the cores, but the tower no longer waits for it)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="columnist-write")
        self.pending: "Future | None" = None

    def submit(self, function: Callable[..., None], *args) -> None:
        self.wait()
        self.pending = self.pool.submit(function, *args)

    def raise_if_failed(self) -> None:
        """The failure of a write that has ended, now rather than at the next submit."""
        if self.pending is not None and self.pending.done():
            self.wait()

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "_OneBehind":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self.pool.shutdown(wait=True)  # an interrupted run still finishes the write under way


def _open_tower_soon_if_it_will_encode(encoder: "Encoder", store: "Store", first: Sequence[tuple[str, Path]],
                                       force: bool) -> None:
    """Open the image tower on a thread of its own while the vocabulary and the first batch
    are read, when this run will encode (``force``, or an id of the first batch the store does
    not hold): the runtime's first session takes most of a second. A run over stored files
    does not open it (one whose files changed opens it when it encodes them)."""
    ids = [image_id_ for image_id_, _ in first]
    if ids and (force or len(store.stored_content(encoder.name, ids)) < len(ids)):
        encoder.open_image_tower_soon()


def _read(batch: Sequence[tuple[str, Path]], limits: ImageLimits, collection: str,
          failed: list[tuple[str, str]], counters: Counters) -> list[ImageInput]:
    inputs = []
    for image_id_, path in batch:
        cap = limits.max_video_bytes if media.suffix_kind(path.name) == media.VIDEO else limits.max_bytes
        try:
            data = read_regular_file(path, cap)
        except OSError as err:  # FileRefused says why; other OSErrors (missing, denied) their strerror
            reason = getattr(err, "reason", None) or err.strerror or str(err)
            failed.append((str(path), f"cannot read file: {reason}"))
            counters.images_failed += 1
            continue
        inputs.append(ImageInput(data, sha256_of(data), str(path), image_id_, absolute(path).as_uri(), collection))
    return inputs


def tag(
    files: Sequence[tuple[str, Path]],
    vocab: Vocabulary,
    encoder: "Encoder",
    store: "Store",
    batch_size: int = 32,
    collection: str = "",
    on_progress: Callable[[int], None] | None = None,
    force: bool = False,
    default_view: bool = True,
    run: TagRun | None = None,
    limits: ImageLimits | None = None,
    target: "Encoder | None" = None,
    write_group: int = 4,
) -> TagRun:
    """Encode, score and store every new file; return what was written, skipped and failed.
    ``run`` is filled as the run goes (for a caller that is interrupted); ``limits``: the
    largest file and image accepted, and the decode threads (the worker's settings);
    ``target``: the model the store is moving to (columnist.model_change), encoded with too.
    The next batch is read and decoded while this one encodes, and every ``write_group``
    batches are written in one set of statements while the next ones encode (the store's cost
    is mostly per statement), so content repeated within the next few batches may be encoded
    again (the same embedding, stored for each name; further on it is reused); an interrupted
    run leaves at most that many batches' work unwritten (the next run does it again)."""
    check_model(store, encoder.name)
    _open_tower_soon_if_it_will_encode(encoder, store, files[:batch_size], force)
    delete_orphans(store)  # what a killed run left, older than check.GRACE_S
    limits = limits or ImageLimits()
    run = run if run is not None else TagRun()
    prompts = PromptCache(encoder, store, run.counters)
    run.applied = ensure_applied(store, encoder, vocab, default_view, prompts, target)
    applied = scored_vocabularies(store)
    vocabularies = [(v, text_embeddings(prompts, v)) for v in applied]
    second = SecondModel(target, [(v, text_embeddings(PromptCache(target, store), v)) for v in applied]) \
        if target is not None else None

    def take(batch: Sequence[tuple[str, Path]]) -> tuple[Sequence[tuple[str, Path]], list[ImageInput], TakenBatch,
                                                         Counters, list[tuple[str, str]]]:
        counted, unread = Counters(), []  # added to the run's by the caller's thread, in file order
        inputs = _read(batch, limits, collection, unread, counted)
        return batch, inputs, take_batch(inputs, encoder, store, counted, limits, skip_unchanged=not force,
                                         force=force), counted, unread

    def write(scored: "ScoredBatch", alongside: "ScoredBatch | None", images: int, encoded: int) -> None:
        if alongside is not None:  # the target's rows first: an image row means every model's are there
            store.write_model_rows(alongside)
        run.counters.add(Counters(score_rows=store.write(scored), images_stored=images, images_encoded=encoded))

    group: list[tuple[ScoredBatch, ScoredBatch | None, int, int]] = []

    def write_scored() -> None:
        """The batches scored since the last write, in one (a run's ids are one per file)."""
        if group:
            alongside = [a for _, a, _, _ in group if a is not None]
            writes.submit(write, ScoredBatch.merged([s for s, _, _, _ in group]),
                          ScoredBatch.merged(alongside) if alongside else None,
                          sum(images for _, _, images, _ in group), sum(encoded for _, _, _, encoded in group))
            group.clear()

    with _OneBehind() as writes, closing(_one_ahead(take, list(_batches(files, batch_size)))) as taken_batches:
        for batch, inputs, taken, counted, unread in taken_batches:
            writes.raise_if_failed()  # a store that refused the last write stops the run here
            run.counters.add(counted)
            run.failed += unread + [(inputs[position].name, getattr(error, "reason", str(error)))
                                    for position, error in taken.failed]
            if taken.prepared:
                scored, failed = embed_and_score_isolating(taken.prepared, vocabularies, encoder)
                run.failed += [(inputs[taken.prepared_from[position]].name, str(err)) for position, err in failed]
                run.counters.add(Counters(images_failed=len(failed)))
                if scored is not None:
                    bad = {position for position, _ in failed}
                    kept = [p for position, p in enumerate(taken.prepared_from) if position not in bad]
                    alongside = second.score(second.take([inputs[p] for p in kept], store, limits)) \
                        if second is not None else None
                    group.append((scored, alongside, len(kept), encoded_count(taken.prepared)))
                    if len(group) >= write_group:
                        write_scored()
            if on_progress:
                on_progress(len(batch))
        write_scored()
    return run
