"""The batch path: tag files and folders without Kafka, with the same pipeline and store.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from columnist.models.images import DEFAULT_MAX_PIXELS, ImageError
from columnist.pipeline import BatchPreparer, ImageInput, embed_and_score, encoded_count, sha256_of
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import Vocabulary

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.store import Store

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class TagReport:
    tagged: int = 0
    """Images written by this run."""
    encoded: int = 0
    """Of those, how many went through the image tower (the rest reused stored embeddings)."""
    already: int = 0
    """Files skipped: stored before under the same id with the same content."""
    score_rows: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def image_id(file: Path, folder: Path | None, collection: str) -> str:
    """The file's URI, or ``collection/relative path`` when a collection namespaces ids."""
    if not collection:
        return file.resolve().as_uri()
    relative = file.resolve().relative_to(folder.resolve()) if folder else Path(file.name)
    return f"{collection}/{relative.as_posix()}"


def find_images(paths: Iterable[str | Path], collection: str = "") -> list[tuple[str, Path]]:
    """(image_id, file) pairs: files with an image suffix in folders (walked recursively), and
    any file named directly."""
    found: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
                    found.append((image_id(file, path, collection), file))
        else:
            found.append((image_id(path, None, collection), path))
    return found


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def applied_with(store: "Store", encoder: "Encoder", vocab: Vocabulary, default_view: bool) -> list[Vocabulary]:
    """Apply ``vocab`` if the store does not have it yet (refused if older than the applied
    one: VocabularyConflict), and return every applied vocabulary."""
    from columnist.vocabulary_change import apply_vocabulary

    applied = {v.name: v for v in store.applied_vocabularies()}
    current = applied.get(vocab.name)
    if current is None or current.content_hash() != vocab.content_hash():
        apply_vocabulary(store, encoder, current, vocab, chunks=0, default_view=default_view)
        applied[vocab.name] = vocab
    return list(applied.values())


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 50_000_000
    max_pixels: int = DEFAULT_MAX_PIXELS
    decode_threads: int = 0


def read_image_file(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes, refused (OSError) beyond ``max_bytes``, before reading them."""
    import stat

    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO named on the command line must not block
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise OSError("not a regular file")
        if status.st_size > max_bytes:
            raise OSError(f"{status.st_size:,} bytes, over the limit of {max_bytes:,}")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"over the limit of {max_bytes:,} bytes")
    return data


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
    report: TagReport | None = None,
    limits: "ImageLimits | None" = None,
) -> TagReport:
    """Encode, score and store every new file; return what was written, skipped and failed.
    ``report`` is filled as the run goes (for a caller that is interrupted); ``limits``: the
    largest file and image accepted, and the decode threads (the worker's settings)."""
    from columnist.store import check_model

    check_model(store, encoder.name)
    limits = limits or ImageLimits()
    report = report if report is not None else TagReport()
    vocabularies = [(v, text_embeddings(encoder, v)) for v in applied_with(store, encoder, vocab, default_view)]
    for batch in _batches(files, batch_size):
        stored = {} if force else store.stored_content(encoder.name, [i for i, _ in batch])
        read = []
        for image_id_, path in batch:
            try:
                data = read_image_file(path, limits.max_bytes)
            except OSError as err:
                report.failed.append((str(path), f"cannot read file: {err.strerror or err}"))
                continue
            sha256 = sha256_of(data)
            if stored.get(image_id_) == sha256:
                report.already += 1
                continue
            read.append((image_id_, path, data, sha256))
        preparer = BatchPreparer(encoder, {} if force else store.known_images(encoder.name, [s for *_, s in read]),
                                 limits.max_pixels, limits.decode_threads)
        inputs = [ImageInput(data, sha256, str(path), image_id_, path.resolve().as_uri(), collection)
                  for image_id_, path, data, sha256 in read]
        prepared = []
        for item, outcome in zip(inputs, preparer.prepare_all(inputs)):
            if isinstance(outcome, ImageError):
                report.failed.append((item.name, outcome.reason))
            elif isinstance(outcome, Exception):
                raise outcome
            else:
                prepared.append(outcome)
        if prepared:
            report.score_rows += store.write(embed_and_score(prepared, vocabularies, encoder))
            report.tagged += len(prepared)
            report.encoded += encoded_count(prepared)
        if on_progress:
            on_progress(len(batch))
    return report
