"""The batch path: tag files and folders without Kafka, with the same encoder, scorer and store.

Images are read, decoded and encoded a batch at a time; a file that cannot be used is
reported with its reason and the rest of its batch goes on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from models.images import ImageError, open_image
from streams.store import ImageRecord, ScoredBatch, Store
from vocab.prompts import text_embeddings
from vocab.schema import Vocabulary
from vocab.scoring import score_vocabulary

if TYPE_CHECKING:
    from models.encoder import Encoder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class TagReport:
    tagged: int = 0
    score_rows: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def find_images(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """(image_id, file) pairs. In a folder, files with an image suffix, identified by their
    path relative to the folder; a file named directly is always tried, identified by name."""
    found: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
                    found.append((file.relative_to(path).as_posix(), file))
        else:
            found.append((path.name, path))
    return found


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def tag(
    files: Sequence[tuple[str, Path]],
    vocab: Vocabulary,
    encoder: "Encoder",
    store: Store,
    batch_size: int = 32,
    collection: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> TagReport:
    """Encode, score and store every file; return what was written and what failed."""
    texts = text_embeddings(encoder, vocab)
    store.apply_vocabulary(vocab, encoder.name)
    report = TagReport()
    for batch in _batches(files, batch_size):
        records, images = [], []
        for image_id, path in batch:
            try:
                data = path.read_bytes()
                image = open_image(data, str(path))
            except ImageError as err:
                report.failed.append((str(path), err.reason))
                continue
            except OSError as err:
                report.failed.append((str(path), f"cannot read file: {err.strerror}"))
                continue
            records.append(ImageRecord(
                image_id=image_id, uri=path.resolve().as_uri(), collection=collection,
                width=image.width, height=image.height, sha256=hashlib.sha256(data).hexdigest(),
            ))
            images.append(image)
        if images:
            embeddings = encoder.encode_images(images)
            scores = score_vocabulary(embeddings, texts, vocab, encoder.logit_scale, encoder.source)
            report.score_rows += store.write(ScoredBatch(encoder.name, vocab, records, embeddings, scores))
            report.tagged += len(images)
        if on_progress:
            on_progress(len(batch))
    return report
