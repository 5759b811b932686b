"""XMP sidecars beside the photos: the attributes an image is accepted for, as keywords that
digiKam, Lightroom, darktable, Immich and PhotoPrism read.

Each accepted attribute (or tentative too, when asked) becomes the attribute's label in
``dc:subject`` and ``columnist|<vocabulary>|<label>`` in ``lr:hierarchicalSubject``; the
labels columnist wrote are listed in its own namespace (``columnist:keywords``), with every
score (``columnist:scores``, ``<vocabulary>|<code>|<score>|<tier>``). So a later run removes
exactly the keywords columnist wrote that no longer hold, and never one a person wrote (a
label the person has too is theirs: columnist does not claim it). Everything else in an
existing sidecar is kept; a sidecar whose keywords would not change is not written at all.

The XMP is read and written by python-xmp-toolkit (Adobe's XMP toolkit, through the system's
libexempi). Writes are atomic (a file beside, then a rename), never through a symbolic link,
and only under the folders given; a sidecar that is not valid XMP is reported, not replaced.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence
from urllib.parse import urlparse

from columnist.errors import ConfigurationError
from columnist.files import file_uri_path, read_regular_file, write_atomically
from columnist.store.keywords import keywords_page

if TYPE_CHECKING:
    from columnist.store import Statements

NAMESPACE = "https://columnist.dev/xmp/1.0/"
LIGHTROOM = "http://ns.adobe.com/lightroom/1.0/"
DUBLIN_CORE = "http://purl.org/dc/elements/1.1/"
BAG = {"prop_array_is_unordered": True}
MAX_SIDECAR_BYTES = 4_000_000
"""A larger sidecar is not read (reported): XMP beside a photo is a few kilobytes."""
NAMINGS = ("append", "replace")
"""``IMG_0001.jpg.xmp`` (digiKam, darktable) or ``IMG_0001.xmp`` (Lightroom); an existing
sidecar of either name is the one updated. ``IMG_0001.xmp`` belongs to no one image when
another file shares the name (a RAW beside its JPEG, IMG_1.jpg beside IMG_1.png): then the
image's own ``IMG_0001.jpg.xmp`` is used, and the shared one is left to its owner."""


class XmpUnavailable(ConfigurationError):
    """libexempi (the XMP toolkit python-xmp-toolkit drives) is not installed."""

    hint = "install it: apt-get install libexempi8 (Debian, Ubuntu), brew install exempi (macOS)"


@dataclass(frozen=True)
class Keyword:
    vocabulary: str
    code: str
    label: str
    score: float
    tier: str


@dataclass
class Change:
    """What a run did (or, dry, would do) to one image's sidecar."""

    image: Path
    sidecar: Path
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    created: bool = False
    error: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.created)


@functools.cache
def _xmp():
    try:
        import libxmp
        from libxmp import XMPMeta
    except Exception as err:  # libxmp raises its own ExempiLoadError when the library is missing
        raise XmpUnavailable(f"XMP sidecars need libexempi: {err}") from None
    XMPMeta.register_namespace(NAMESPACE, "columnist")
    XMPMeta.register_namespace(LIGHTROOM, "lr")
    return libxmp


def check_available() -> None:
    """XmpUnavailable unless libexempi can be loaded."""
    _xmp()


def sidecar_of(image: Path, naming: str = "append", folders: "Folders | None" = None) -> Path:
    """The sidecar to update: an existing one of either name, else the ``naming`` one; never
    ``IMG.xmp`` when another photo or video is named IMG too (see NAMINGS)."""
    appended, replaced = image.with_name(image.name + ".xmp"), image.with_suffix(".xmp")
    if os.path.lexists(appended) or (folders or Folders()).shared(image):
        return appended
    if os.path.lexists(replaced):
        return replaced
    return new_sidecar(image, naming)


def new_sidecar(image: Path, naming: str = "append") -> Path:
    """The name ``naming`` gives a sidecar ``image`` has none of yet (NAMINGS)."""
    return image.with_name(image.name + ".xmp") if naming == "append" else image.with_suffix(".xmp")


class Folders:
    """How many photos and videos of each name (without suffix) a folder holds, each folder
    listed once a run: IMG_1.CR2 beside IMG_1.JPG shares IMG_1.xmp, an IMG_1.AAE does not."""

    def __init__(self) -> None:
        self.stems: dict[Path, dict[str, int]] = {}

    def shared(self, image: Path) -> bool:
        from columnist.tagger import SUPPORTED

        folder = image.parent
        if folder not in self.stems:
            counts: dict[str, int] = {}
            try:
                for entry in os.scandir(folder):
                    name, dot, suffix = entry.name.rpartition(".")
                    if dot and f".{suffix.lower()}" in SUPPORTED:
                        counts[name] = counts.get(name, 0) + 1
            except OSError:
                pass
            self.stems[folder] = counts
        return self.stems[folder].get(image.stem, 0) > 1


def _read_only(sidecar: Path) -> bool:
    """Marked read-only (no write bit: a person locked it; root may write anyway, and must not)."""
    try:
        return not (os.stat(sidecar).st_mode & 0o222) or not os.access(sidecar, os.W_OK)
    except OSError:
        return False  # none there, or a dangling link (refused when written)


def update(image: Path, keywords: Sequence[Keyword], naming: str = "append", dry_run: bool = False,
           scope: Sequence[str] | None = None, folders: Folders | None = None) -> Change:
    """Bring ``image``'s sidecar to ``keywords`` (what columnist says of it now); with
    ``scope``, only those vocabularies' keywords: another vocabulary's stay as they are."""
    libxmp = _xmp()
    sidecar = sidecar_of(image, naming, folders)
    change = Change(image, sidecar)
    meta = libxmp.XMPMeta()
    if sidecar.is_symlink():  # neither read nor written through: its target may be anywhere
        change.error = "a symbolic link, left as it is"
        return change
    if _read_only(sidecar):
        change.error = "read-only, left as it is"
        return change
    if os.path.lexists(sidecar):
        try:
            meta.parse_from_str(_read(sidecar))
        except (OSError, UnicodeDecodeError, libxmp.XMPError, ValueError) as err:
            change.error = f"not valid XMP, left as it is: {err}"[:300]
            return change
    elif not keywords:
        return change  # nothing to say, and no sidecar to mend
    else:
        change.created = True
    hierarchical = _array(meta, LIGHTROOM, "hierarchicalSubject")
    written_before = set(_array(meta, NAMESPACE, "keywords"))
    mine = [h for h in hierarchical if h.startswith("columnist|") and h.count("|") >= 2
            and h.split("|", 2)[2] in written_before]  # a person's own columnist|... path stays theirs
    outside = (lambda vocabulary: scope is not None and vocabulary not in scope)
    kept_paths = [h for h in mine if outside(h.split("|")[1])]
    kept_scores = [e for e in _array(meta, NAMESPACE, "scores") if outside(e.split("|")[0])]
    labels = list(dict.fromkeys([k.label for k in keywords] + [h.split("|", 2)[2] for h in kept_paths]))
    subjects = _array(meta, DUBLIN_CORE, "subject")
    theirs = [s for s in subjects if s not in written_before]
    ours = [label for label in labels if label not in theirs]
    change.added = [label for label in ours if label not in written_before]
    change.removed = [label for label in written_before if label not in ours]
    wanted_paths = kept_paths + [f"columnist|{k.vocabulary}|{k.label}" for k in keywords]
    new_hierarchical = [h for h in hierarchical if h not in mine] + list(dict.fromkeys(wanted_paths))
    scores = kept_scores + [f"{k.vocabulary}|{k.code}|{k.score:.4f}|{k.tier}" for k in keywords]
    if not change.created and not change.added and not change.removed and new_hierarchical == hierarchical \
            and _array(meta, NAMESPACE, "scores") == scores:
        return change  # the sidecar says this already: not rewritten
    if dry_run:
        return change
    try:
        _set_array(meta, DUBLIN_CORE, "subject", theirs + ours)
        _set_array(meta, LIGHTROOM, "hierarchicalSubject", new_hierarchical)
        _set_array(meta, NAMESPACE, "keywords", ours)
        _set_array(meta, NAMESPACE, "scores", scores)
        write_atomically(sidecar, meta.serialize_to_str(use_compact_format=False))  # a link was refused above
    except libxmp.XMPError as err:  # one image's sidecar, not the run
        change.error = f"the XMP toolkit refused it: {err}"[:300]
    except OSError as err:
        change.error = f"cannot write: {err.strerror or err}"
    return change


def _array(meta, namespace: str, name: str) -> list[str]:
    if not meta.does_property_exist(namespace, name):
        return []
    return [meta.get_array_item(namespace, name, i) for i in range(1, meta.count_array_items(namespace, name) + 1)]


def _set_array(meta, namespace: str, name: str, items: list[str]) -> None:
    if meta.does_property_exist(namespace, name):
        meta.delete_property(namespace, name)
    for item in items:
        meta.append_array_item(namespace, name, item, BAG)


def _read(path: Path) -> str:
    """The sidecar's text: a regular file (not followed through a link), at most MAX_SIDECAR_BYTES."""
    return read_regular_file(path, MAX_SIDECAR_BYTES).decode("utf-8")


# -- from the store ---------------------------------------------------------------------------

@dataclass
class Run:
    changes: list[Change] = field(default_factory=list)
    images: int = 0
    outside: list[str] = field(default_factory=list)
    """URIs of stored images outside the folders sidecars may be written in (not touched)."""
    missing: list[str] = field(default_factory=list)
    """Images whose file is gone (no sidecar written beside nothing)."""


def keywords_by_image(store: "Statements", vocabularies: Sequence[str], tiers: Sequence[str],
                      image_ids: Sequence[str] | None = None, page: int = 5_000) -> Iterable[tuple[str, list[Keyword]]]:
    """(uri, keywords) of every stored image with a file:// URI (or of ``image_ids``), page by page."""
    after = ""
    while True:
        rows = keywords_page(store, after, page, tiers, vocabularies, image_ids)
        if not rows:
            return
        current, uri, keywords = None, "", []
        for image_id, row_uri, vocab, code, label, score, tier in rows:
            if image_id != current:
                if current is not None:
                    yield uri, keywords
                current, uri, keywords = image_id, row_uri, []
            if vocab:
                keywords.append(Keyword(vocab, code, label, float(score), tier))
        yield uri, keywords
        after = current
        if len({r[0] for r in rows}) < page:
            return


def write_all(store: "Statements", roots: Sequence[Path], vocabularies: Sequence[str], tiers: Sequence[str],
              naming: str = "append", dry_run: bool = False, image_ids: Sequence[str] | None = None,
              every_vocabulary: bool = True) -> Run:
    """Every stored image's sidecar under ``roots`` brought to what the store says now (of
    ``vocabularies``; unless ``every_vocabulary``, another vocabulary's keywords are kept)."""
    if naming not in NAMINGS:
        raise ConfigurationError(f"sidecar naming {naming!r}: choose {' or '.join(NAMINGS)}")
    if image_ids is None:  # a whole run names what a person typed; a worker's batch, what it holds
        applied = {v.name for v in store.applied_vocabularies()}
        unknown = [name for name in vocabularies if name not in applied]
        if unknown:
            raise ConfigurationError(f"no vocabulary {', '.join(map(repr, unknown))} is applied in this store "
                                     f"(applied: {', '.join(sorted(applied)) or 'none'})")
    scope = None if every_vocabulary else list(vocabularies)
    folders = Folders()
    _xmp()  # before anything: say at once when libexempi is missing
    resolved = [Path(r).resolve() for r in roots]
    run = Run()
    for uri, keywords in keywords_by_image(store, vocabularies, tiers, image_ids):
        run.images += 1
        image = Path(file_uri_path(urlparse(uri).path))
        folder = image.parent.resolve() if image.parent.exists() else None
        if folder is None or not any(folder == r or folder.is_relative_to(r) for r in resolved):
            run.outside.append(uri)
            continue
        if not image.is_file():
            run.missing.append(uri)
            continue
        try:
            change = update(folder / image.name, keywords, naming, dry_run, scope, folders)
        except OSError as err:  # a name too long once '.xmp' is added, a folder gone meanwhile: this image only
            change = Change(image, new_sidecar(image, naming),
                            error=f"left as it is: {err.strerror or type(err).__name__}")
        if change.changed or change.error:
            run.changes.append(change)
    return run
