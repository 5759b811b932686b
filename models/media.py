"""What kind of media a file is (a still image, a camera RAW, a video), from its first bytes
and its name, and the file names columnist walks.

Stills are decoded by Pillow (models.images: JPEG, PNG, GIF, BMP, TIFF, WebP, HEIC/HEIF,
AVIF, JPEG XL), camera RAW by LibRaw (models.raw: the embedded preview, or a half-size
demosaic), video by FFmpeg (models.video: frames sampled by time and scene change). The
bytes decide where they can (magic numbers); a name's suffix decides only what the bytes
leave open (a TIFF that is a camera's RAW, an MPEG transport stream).
"""

from __future__ import annotations

from pathlib import PurePosixPath

IMAGE, RAW, VIDEO = "image", "raw", "video"

STILL_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif",
                  ".hif", ".avif", ".jxl"}
RAW_SUFFIXES = {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
                ".pef", ".srw", ".3fr", ".erf", ".kdc", ".mrw", ".x3f", ".iiq", ".rwl"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".3gp", ".3g2", ".mts", ".m2ts", ".ts"}
SUFFIXES = {IMAGE: STILL_SUFFIXES, RAW: RAW_SUFFIXES, VIDEO: VIDEO_SUFFIXES}

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"mif2"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"m4v ", b"M4V ", b"qt  ", b"3gp4",
                 b"3gp5", b"3gp6", b"3g2a", b"dash", b"avc1", b"MSNV", b"f4v ", b"XAVC", b"mmp4"}
DNG_VERSION_TAG = 50706


def suffix_kind(name: str) -> str | None:
    """The kind a file name's suffix promises (None: not one columnist reads)."""
    suffix = PurePosixPath(name.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    return next((kind for kind, suffixes in SUFFIXES.items() if suffix in suffixes), None)


def kind_of(data: bytes, name: str = "") -> str:
    """IMAGE, RAW or VIDEO for ``data`` (a file called ``name``). What the bytes do not say
    is a still image: Pillow then says what it is not."""
    head = data[:64]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"crx ":
            return RAW  # Canon CR3
        if brand in _HEIF_BRANDS:
            return IMAGE
        if brand in _VIDEO_BRANDS or suffix_kind(name) == VIDEO:
            return VIDEO
        return IMAGE
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # Matroska / WebM
        return VIDEO
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return VIDEO
    if head[:4] in (b"IIRO", b"IIRS", b"IIU\x00") or head.startswith(b"FUJIFILMCCD-RAW"):
        return RAW  # Olympus ORF, Panasonic RW2, Fujifilm RAF
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        if head[8:10] == b"CR" or suffix_kind(name) == RAW or _tiff_has_tag(data, DNG_VERSION_TAG):
            return RAW  # Canon CR2, DNG and the TIFF-based RAWs (NEF, ARW, PEF, SRW, ...)
        return IMAGE
    if suffix_kind(name) == VIDEO and (head[:1] == b"\x47" or head[4:5] == b"\x47"):
        return VIDEO  # MPEG transport stream (.ts, .mts, .m2ts)
    return IMAGE


def _tiff_has_tag(data: bytes, tag: int) -> bool:
    """Whether the first IFD of a TIFF names ``tag`` (bounded: at most 512 entries read)."""
    import struct

    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset:offset + 2])
        for entry in range(min(count, 512)):
            start = offset + 2 + 12 * entry
            (found,) = struct.unpack(order + "H", data[start:start + 2])
            if found == tag:
                return True
    except struct.error:
        return False
    return False
