"""A corpus of hostile inputs: what careless producers and attackers send the worker.

Each case is an event (raw bytes as they would arrive from Kafka) and the words its dead
letter's reason must contain. Cases that need files make them under ``root`` (an image
root) and ``outside`` (a folder that is not one). Grow this list whenever a new way to
break the worker is found: the unit tests run every case through ingest preparation, the
integration test through a real broker and worker.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import struct
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from PIL import Image

from bench import media


MAX_BYTES = 30_000
"""The image size cap the corpus is run with (the sample photos are under it)."""


@dataclass(frozen=True)
class Case:
    name: str
    event: bytes | None
    reason: str
    key: bytes | None = None
    """The Kafka key it is sent with; None: keyed as a careful producer keys it (kafka_key)."""

    def kafka_key(self, otherwise: bytes) -> bytes:
        """This case's key, else its event's image_id when it has one, else ``otherwise``."""
        if self.key is not None:
            return self.key
        try:
            image_id = json.loads(self.event or b"null")["image_id"]
        except (ValueError, TypeError, KeyError, RecursionError):
            return otherwise
        return image_id.encode() if isinstance(image_id, str) and image_id else otherwise


def event(image_id: str, uri: str, **extra) -> bytes:
    return json.dumps({"schema": 1, "image_id": image_id, "uri": uri, **extra}).encode()


def fuzzed_tiff(seed: int = 3) -> bytes:
    """A TIFF whose tag bytes are scrambled: Pillow raises all sorts of classes on these."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    rng = random.Random(seed)
    for _ in range(12):
        data[rng.randrange(8, min(len(data), 200))] = rng.randrange(256)
    return bytes(data)


def scan_bomb(scans: int = 5_000) -> bytes:
    """A JPEG with thousands of empty scans: tiny, and minutes of decoder time if decoded."""
    buffer = io.BytesIO()
    Image.new("L", (64, 64)).save(buffer, "JPEG", progressive=True)
    empty_scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    return buffer.getvalue()[:-2] + empty_scan * scans + b"\xff\xd9"


def ico_bomb(side: int = 2_000) -> bytes:
    """An ICO whose directory says 16x16 around a PNG of side x side: Pillow's ICO plugin decodes
    the PNG inside Image.open, before any size check (13000x13000 took 3 GB). Named .png."""
    import struct

    buffer = io.BytesIO()
    Image.new("RGBA", (side, side)).save(buffer, "PNG")
    png = buffer.getvalue()
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png


def prompt_explosion_document(attributes: int = 200, templates: int = 50) -> dict:
    """A 255 kB vocabulary that `vocab validate` once called ok: 50 templates repeating
    {description} 76 times (988 characters each) x 200 descriptions of 1,000 characters
    rendered 10,000 prompts of 76,000 characters (ten minutes and ~17 GB in a worker)."""
    template = "{description}" * 76
    return {"name": "space", "version": 2, "templates": [template + f"{n:02d}" for n in range(templates)],
            "attributes": [{"code": f"a{i}", "description": f"{i} " + "d" * 995} for i in range(attributes)]}


def prompt_explosion() -> bytes:
    """The prompt explosion as a vocabulary event."""
    document = prompt_explosion_document()
    return json.dumps({"schema": 1, "name": "space", "version": 2, "content_hash": "0" * 64,
                       "document": document}).encode()


# -- each media format's bombs (made with the libraries that write the formats) -----------

def jxl_claiming(width: int, height: int) -> bytes:
    """A JPEG XL codestream whose SizeHeader claims ``width`` x ``height`` (nothing after it)."""
    def u32(value: int) -> list[int]:  # selector 3 (two bits, least significant first), then 30 bits of value - 1
        return [1, 1] + [((value - 1) >> i) & 1 for i in range(30)]

    bits = [0] + u32(height) + [0, 0, 0] + u32(width)  # not small; height; no ratio; width
    bits += [0] * (-len(bits) % 8)
    return b"\xff\x0a" + bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8)) + b"\x00" * 32


def heic_declaring(width: int, height: int) -> bytes:
    small = media.heic(Image.new("RGB", (64, 64), (200, 30, 30)))
    at = small.index(b"ispe")
    return small[:at + 8] + struct.pack(">II", width, height) + small[at + 16:]


def dng_claiming(side: int) -> bytes:
    """A DNG whose sensor IFD declares ``side`` x ``side`` (tags 256/257), with a tiny strip."""
    import tifffile

    buffer = io.BytesIO()
    made_dng = media.dng(Image.new("RGB", (64, 64), (90, 90, 90)), preview_side=None)
    with tifffile.TiffFile(io.BytesIO(made_dng)) as tif:
        page = tif.pages[0]
        offsets = {tag.name: tag.valueoffset for tag in page.tags.values()}
    data = bytearray(made_dng)
    for name in ("ImageWidth", "ImageLength"):
        struct.pack_into("<I", data, offsets[name], side)
    buffer.write(bytes(data))
    return buffer.getvalue()



def image_cases(root: Path, outside: Path) -> list[Case]:
    """Events that must each be dead-lettered with a reason, never crash or hang the worker."""
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.jpg").write_bytes(b"outside content")
    (root / "ok.jpg").write_bytes(b"not really a jpeg")
    (root / "link-out.jpg").symlink_to(outside / "secret.jpg")
    (root / "loop-a.jpg").symlink_to(root / "loop-b.jpg")
    (root / "loop-b.jpg").symlink_to(root / "loop-a.jpg")
    os.mkfifo(root / "fifo.jpg")
    os.link(outside / "secret.jpg", root / "hardlink.jpg")
    (root / "folder.jpg").mkdir()
    (root / "fuzzed.tif").write_bytes(fuzzed_tiff())
    (root / "scans.jpg").write_bytes(scan_bomb())
    (root / "empty.jpg").write_bytes(b"")
    (root / "icon.png").write_bytes(ico_bomb())
    (root / "bomb.jxl").write_bytes(jxl_claiming(100_000, 100_000))
    (root / "bomb.heic").write_bytes(heic_declaring(20_000, 20_000))
    (root / "sensor.dng").write_bytes(dng_claiming(20_000))
    (root / "cut.heic").write_bytes(media.heic(media.photo())[:3000])
    clip = media.video(root / "whole.mp4", seconds=4).read_bytes()
    (root / "cut.mp4").write_bytes(clip[:len(clip) // 2])
    media.video(root / "raw.mkv", seconds=0.2, fps=5, size=(64, 48), codec="rawvideo")
    uri = (root / "x").as_uri()[:-1]  # file:///…/root/
    deep = b"[" * 100_000 + b"]" * 100_000
    meta = {"m": 0}
    for _ in range(3_000):
        meta = {"m": meta}
    return [
        Case("tombstone", None, "tombstone"),
        Case("JSON nested 100,000 deep", deep, "nested more than"),
        Case("meta nested 3,000 deep", b'{"schema": 1, "image_id": "m", "uri": "file:///a", "meta": '
             + b'{"m": ' * 3000 + b"0" + b"}" * 3000 + b"}", "nested more than"),
        Case("a 5,000-digit integer", b'{"schema": 1, "image_id": "n", "uri": "file:///a", "meta": {"n": '
             + b"9" * 5000 + b"}}", "not valid JSON"),
        Case("event over the size limit", event("big", "file:///a", meta={"x": "\"" * 1_100_000}), "over the limit"),
        Case("not JSON", b"{this is not json", "not valid JSON"),
        Case("not UTF-8", b"\xff\xfe\x00", "not valid JSON"),
        Case("a JSON list", b"[1, 2, 3]", "expected a JSON object"),
        Case("schema 2", b'{"schema": 2, "image_id": "s", "uri": "file:///a"}', "schema"),
        Case("no uri", b'{"schema": 1, "image_id": "u"}', "uri: missing"),
        Case("deleted, but not a boolean", b'{"schema": 1, "image_id": "u", "deleted": "maybe"}', "valid boolean"),
        Case("deleted as the word yes", b'{"schema": 1, "image_id": "u", "deleted": "yes"}', "valid boolean"),
        Case("deleted as the number 1", b'{"schema": 1, "image_id": "u", "deleted": 1}', "valid boolean"),
        Case("image_id not a string", b'{"schema": 1, "image_id": 5, "uri": "file:///a"}', "image_id"),
        Case("meta too large", event("mb", "file:///a", meta={"x": "a" * 20_000}), "meta"),
        Case("700 kB of escaped quotes", event("quotes", "file:///a", meta={"q": '"' * 350_000}), "meta"),
        Case("NUL byte in a file URI", event("nul", uri + "ok.jpg%00.png"), "NUL byte"),
        Case("a file used as a folder", event("nd", uri + "ok.jpg/x"), "not a folder"),
        Case("a 300-character file name", event("long", uri + "a" * 300 + ".jpg"), "too long"),
        Case("a symlink loop", event("loop", uri + "loop-a.jpg"), "cannot resolve"),
        Case("a symlink out of the roots", event("link", uri + "link-out.jpg"), "outside the image roots"),
        Case("dot-dot out of the roots", event("dots", uri + "../outside/secret.jpg"), "outside the image roots"),
        Case("outside the roots", event("out", (outside / "secret.jpg").as_uri()), "outside the image roots"),
        Case("a FIFO", event("fifo", uri + "fifo.jpg"), "FIFO"),
        Case("a directory", event("dir", uri + "folder.jpg"), "a directory"),
        Case("a hard link to an outside file", event("hard", uri + "hardlink.jpg"), "hard links"),
        Case("a device", event("dev", "file:///dev/zero"), "outside the image roots"),
        Case("a missing file", event("missing", uri + "nope.jpg"), "file not found"),
        Case("a file with a host", event("host", "file://example.com/etc/passwd"), "names a host"),
        Case("a lone surrogate escape in a file URI", event("surrogate", uri + "m\udcffoon.jpg"), "not valid Unicode"),
        Case("an image id in a video frame's form", event("clip.mp4#t=0.000", uri + "ok.jpg"), "video frame's id"),
        Case("a newline in a file URI (the URL parser drops it)", event("nl", uri + "ok.jpg\n"), "control character"),
        Case("an event keyed by another image id (Kafka would order it with that image's events)",
             event("keyed", uri + "ok.jpg"), "not keyed by its image_id", key=b"someone-else"),
        Case("a delete of a video frame's id", b'{"schema": 1, "image_id": "v#t=1.5", "deleted": true}',
             "video frame's id"),
        Case("not an image", event("notimg", uri + "ok.jpg"), "not an image"),
        Case("an empty file", event("empty", uri + "empty.jpg"), "empty file"),
        Case("a fuzzed TIFF", event("tiff", uri + "fuzzed.tif"), "image 'tiff'"),
        Case("a JPEG of thousands of scans", event("scans", uri + "scans.jpg"), "scans"),
        Case("an ICO around a big PNG, named .png", event("ico", uri + "icon.png"), "not an image columnist reads"),
        Case("a JPEG XL declaring 100000x100000", event("jxl", uri + "bomb.jxl"), "refused before decoding"),
        Case("a HEIC declaring 20000x20000", event("heic", uri + "bomb.heic"), "refused before decoding"),
        Case("a DNG whose sensor claims 20000x20000", event("dng", uri + "sensor.dng"), "refused before decoding"),
        Case("a HEIC cut short", event("cutheic", uri + "cut.heic"), "HEIF"),
        Case("a video cut short", event("cutmp4", uri + "cut.mp4"), "cut short"),
        Case("a video of a codec columnist does not decode", event("rawvideo", uri + "raw.mkv"),
             "codec 'rawvideo' is not one"),
        Case("a bad http port", event("port", "http://127.0.0.1:abc/a.jpg"), "malformed URL"),
        Case("an unclosed IPv6 bracket", event("v6", "http://[::1/a.jpg"), "malformed URL"),
        Case("credentials in a URL", event("cred", "http://user:pw@127.0.0.1:9/a.jpg"), "credentials"),
        Case("http off by default", event("http", "http://127.0.0.1:9/a.jpg"), "not on the http allow-list"),
        Case("unknown scheme", event("ftp", "ftp://example.com/a.jpg"), "unsupported URI scheme"),
        Case("raw data: over the cap", event("raw", "data:," + "A" * (MAX_BYTES + 6_000)), "over the limit"),
        Case("base64 data: not an image", event("b64", "data:image/png;base64," + base64.b64encode(b"x" * 50).decode()),
             "not an image"),
        Case("bad base64", event("badb64", "data:image/png;base64,@@@"), "not valid base64"),
        Case("a huge URI", event("hugeuri", "file:///" + "a/" * 10_000), "over the limit"),
    ]


def vocabulary_cases(valid_document: dict) -> list[Case]:
    """Vocabulary events that must be dead-lettered while the worker keeps its vocabulary."""
    def document_event(edit) -> bytes:
        document = json.loads(json.dumps(valid_document))
        document["version"] = 90
        edit(document)
        return json.dumps({"schema": 1, "name": document.get("name"), "version": document.get("version"),
                           "content_hash": "x" * 64, "document": document}).encode()

    def valid_event(version: int) -> bytes:
        from columnist.kafka.events import vocab_event
        from columnist.vocab.schema import vocabulary_from_dict

        return vocab_event(vocabulary_from_dict({**valid_document, "version": version}))

    def set_template(template):
        return lambda d: d.update(templates=[template])

    return [
        Case("tombstone", None, "tombstone"),
        Case("deep JSON", b"[" * 50_000 + b"]" * 50_000, "nested more than"),
        Case("unknown placeholder", document_event(set_template("{description} at {place}")), "unknown placeholder"),
        Case("escaped braces only", document_event(set_template("a photo of {{description}}")), "no {description}"),
        Case("version beyond UInt32", document_event(lambda d: d.update(version=1_099_511_627_776)),
             "less than or equal to 4294967295"),
        Case("3,000 nots", document_event(lambda d: d.setdefault("derived", []).append(
            {"code": "deep_not", "rule": "not " * 3000 + "earth"})), "at most 1000 characters"),
        Case("60 nested nots", document_event(lambda d: d.setdefault("derived", []).append(
            {"code": "deep_not", "rule": "not " * 60 + "earth"})), "more than 50 deep"),
        Case("a vocabulary keyed by another name (compaction would keep it beside the newer ones)",
             valid_event(90), "not keyed by its vocabulary name", key=b"pets"),
        Case("NaN centre", document_event(lambda d: d.update(calibration={"centre": float("nan"), "scale": 2.5})),
             "finite number"),
        Case("a prompt explosion (10,000 prompts of 76,000 characters)", prompt_explosion(), "renders a prompt of"),
        Case("prompts too long together", document_event(lambda d: d.update(
            templates=["{description} " * 13 + "{description}"],
            attributes=[{"code": f"a{i}", "description": "d" * 100} for i in range(1_900)])), "characters together"),
    ]


QUERY_PROBES: list[tuple[str, str]] = [
    ("SELECT 1 INTO OUTFILE '{out}'", "INTO OUTFILE"),
    ("select 1 into   outfile '{out}' append", "INTO OUTFILE"),
    ("SELECT 1 /* hidden */ INTO OUTFILE '{out}' COMPRESSION 'gzip' LEVEL 3", "INTO OUTFILE"),
    ("SELECT 1; SELECT 1 INTO OUTFILE '{out}'", "not one valid SQL statement"),
    ("KILL QUERY WHERE 1", "only SELECT"),
    ("INSERT INTO columnist.images (image_id) VALUES ('x')", "only SELECT"),
    ("DROP TABLE columnist.images", "only SELECT"),
    ("EXPLAIN SELECT 1", "only SELECT"),
    ("SYSTEM SHUTDOWN", "only SELECT"),
    ("SELECT file('/etc/hostname')", "reads files"),
    ("SELECT length(FILE('/etc/hostname'))", "reads files"),
    ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "table functions"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', 'CSV')", "table functions"),
    ("SELECT * FROM numbers(3)", "table functions"),
    ("SELECT * FROM (SELECT * FROM executable('x.sh', 'CSV', 'a Int8'))", "table functions"),
    ("SELECT 1 FROM columnist.images WHERE image_id IN (SELECT * FROM file('/etc/passwd', 'CSV'))", "table functions"),
    ("SELECT * APPLY file FROM (SELECT '/etc/hostname' AS p)", "APPLY"),
    ("SELECT COLUMNS('p') APPLY(file) FROM (SELECT '/etc/hostname' AS p)", "APPLY"),
    ("SELECT * APPLY(x -> file(x)) FROM (SELECT '/etc/hostname' AS p)", "APPLY"),
    ("this is not SQL", "not one valid SQL statement"),
    ("SELECT 1 SETTINGS readonly = 0", "settings clause"),
    ("SELECT 1 FORMAT TSV", "format clause"),
    ("SELECT '" + "x" * 70_000 + "'", "over the limit"),
    # the host's internals (round three of the hostile corpus)
    ("SELECT * FROM system.stack_trace", "not one of columnist's tables"),
    ("SELECT * FROM system.processes", "not one of columnist's tables"),
    ("SELECT name, value FROM system.settings", "not one of columnist's tables"),
    ("SELECT * FROM system.disks", "not one of columnist's tables"),
    ("SELECT * FROM system.errors", "not one of columnist's tables"),
    ("SELECT * FROM system.build_options", "not one of columnist's tables"),
    ("SELECT count() FROM columnist.images WHERE image_id IN (SELECT name FROM system.tables)",
     "not one of columnist's tables"),
    ("SELECT * FROM default.anything", "not one of columnist's tables"),
    ("SELECT addressToLine(toUInt64(1))", "not allowed here"),
    ("SELECT filesystemAvailable()", "not allowed here"),
    ("SELECT getSetting('max_threads')", "not allowed here"),
    ("SELECT hostname()", "not allowed here"),
    ("SELECT FQDN()", "not allowed here"),
    ("SELECT version(), uptime()", "not allowed here"),
    ("SELECT aiGenerate('hello')", "not allowed here"),
    ("SELECT logTrace('forged log line')", "not allowed here"),
    ("SELECT dictGet('d', 'x', 1)", "not allowed here"),
    ("SHOW TABLES FROM system", "only `SHOW TABLES`"),
    ("DESCRIBE TABLE system.one", "only `SHOW TABLES`"),
    ("DESCRIBE TABLE file('/etc/passwd')", "only `SHOW TABLES`"),
    ("SHOW CREATE TABLE columnist.images", "only `SHOW TABLES`"),
]
"""Statements the worker's query page must refuse, and the words of the refusal ({out}: a
file that must not be written)."""


def _edit_json(path, **changes):
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


HOSTILE_FOLDERS = {  # a model folder edited by each case, and the words of its refusal
    "NaN mean": (lambda f: (f / "visual" / "preprocess_cfg.json").write_text(
        (f / "visual" / "preprocess_cfg.json").read_text().replace("0.48145466", "NaN")), "NaN is not a number"),
    "std of zero": (lambda f: _edit_json(f / "visual" / "preprocess_cfg.json", std=[0, 0, 0]), "out of range"),
    "a 30000-pixel side": (lambda f: _edit_json(f / "visual" / "preprocess_cfg.json", size=[30000, 30000]),
                           "less than or equal to 1024"),
    "a list for a config": (lambda f: (f / "config.json").write_text("[1, 2]"), "not a JSON object"),
    "a string for text_cfg": (lambda f: _edit_json(f / "config.json", text_cfg="x"), "do not describe a model"),
    "a FIFO config": (lambda f: ((f / "config.json").unlink(), os.mkfifo(f / "config.json")), "not a regular file"),
    "a link out of the folder": (lambda f: (f / "visual" / "passwd.txt").symlink_to("/etc/passwd"),
                                 "a link to a file outside the model folder"),
    "Infinity in a config": (lambda f: (f / "config.json").write_text('{"embed_dim": Infinity}'), "Infinity is not"),
    "1e999 in a config": (lambda f: (f / "visual" / "preprocess_cfg.json").write_text('{"size": 1e999}'), "beyond"),
    "a fractional embedding size": (lambda f: _edit_json(f / "config.json", embed_dim=512.7), "not a whole number"),
    "a FIFO tokenizer": (lambda f: ((f / "textual" / "tokenizer.json").unlink(),
                                    os.mkfifo(f / "textual" / "tokenizer.json")), "tokenizer.json: a FIFO"),
    "a sparse weights file": (lambda f: ((f / "visual" / "weights.bin").write_bytes(b""),
                                         os.truncate(f / "visual" / "weights.bin", 64 << 20)), "a sparse file"),
}

QUERY_PROBES += [
    ("SELECT (SELECT length(arrayConcat(range(300000000), range(300000000))))", "memory limit|MEMORY_LIMIT"),
    ("SELECT currentQueryID()", "not allowed here"),
    ("SELECT pgGetUserById(1)", "not allowed here"),
    ("SELECT serverTimezone()", "not allowed here"),
]


def model_event_cases() -> list[Case]:
    """Model events (key columnist.model on the vocabulary topic) that must be dead-lettered
    while the worker keeps serving its model."""
    def event_of(**fields) -> bytes:
        return json.dumps({"schema": 1, "kind": "model", **fields}).encode()

    return [
        Case("not JSON", b"migrate --to mock", "not valid JSON"),
        Case("an unknown step", event_of(action="drop", to="mock"), "'migrate', 'cutover' or 'retire'"),
        Case("a model name of 1 MB", event_of(action="migrate", to="m" * 1_000_000), "at most 4096 characters"),
        Case("deep JSON", b'{"schema": 1, "kind": "model", "action": "migrate", "to": ' + b"[" * 50_000 + b"]" * 50_000
             + b"}", "nested more than"),
        Case("a vocabulary under the model key", event_of(action="migrate", to=None), "valid string"),
        Case("a cutover to no model", event_of(action="cutover", to=""), "names its model"),
        Case("a cutover to blanks", event_of(action="cutover", to="   ", force=True), "names its model"),
        Case("a retire of no model", event_of(action="retire", to="mock"), "names its model"),
        Case("a vocabulary document keyed columnist.model", json.dumps(
            {"schema": 1, "name": "space", "version": 2, "content_hash": "x" * 64, "document": {"name": "space"}}
        ).encode(), "a model event (key columnist.model): kind: missing"),
    ]


def sidecar_cases() -> list[tuple[str, Callable[[Path], None], str]]:
    """Sidecars a photo may have beside it that `columnist sidecars` must leave alone, naming
    why: (name, make it at a path, the reason's words)."""
    laughs = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "ha">' +
              "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]>"
              '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&j;</dc:title>'
              "</rdf:Description></rdf:RDF></x:xmpmeta>")
    return [
        ("a billion laughs (nested XML entities)", lambda path: path.write_text(laughs), "not valid XMP"),
        ("5 MB of XMP", lambda path: path.write_text("<x:xmpmeta>" + " " * 5_000_000), "over the limit"),
        ("binary garbage", lambda path: path.write_bytes(bytes(range(256)) * 4), "not valid XMP"),
        ("a FIFO nobody writes to", lambda path: os.mkfifo(path), "not a regular file"),
        ("a read-only sidecar (the person locked it)", lambda path: (
            path.write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'), path.chmod(0o444)), "read-only"),
    ]
