"""The batch path: tag files and folders without Kafka, with the same encoder, scorer and store.

Images are read, decoded and encoded a batch at a time; a file that cannot be used is
reported with its reason and the rest of its batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from columnist.models.images import ImageError
from columnist.streams.pipeline import embed_and_score, prepare
from columnist.vocab.prompts import text_embeddings
from columnist.vocab.schema import Vocabulary

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.streams.store import Store

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
    store: "Store",
    batch_size: int = 32,
    collection: str = "",
    on_progress: Callable[[int], None] | None = None,
) -> TagReport:
    """Encode, score and store every file; return what was written and what failed."""
    texts = text_embeddings(encoder, vocab)
    store.apply_vocabulary(vocab, encoder.name)
    report = TagReport()
    for batch in _batches(files, batch_size):
        prepared = []
        for image_id, path in batch:
            try:
                data = path.read_bytes()
                prepared.append(prepare(data, str(path), encoder, image_id, path.resolve().as_uri(), collection))
            except ImageError as err:
                report.failed.append((str(path), err.reason))
            except OSError as err:
                report.failed.append((str(path), f"cannot read file: {err.strerror}"))
        if prepared:
            report.score_rows += store.write(embed_and_score(prepared, vocab, texts, encoder))
            report.tagged += len(prepared)
        if on_progress:
            on_progress(len(batch))
    return report
