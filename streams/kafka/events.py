"""The JSON events on columnist's topics, and their parsing into typed records.

Plain JSON with a ``schema`` version, so any producer works (kcat, another service).
Every event is hostile until bounded: its size, its nesting depth, the digits of its numbers
and the size of its ``meta`` are checked before anything uses it, and every parse failure
becomes an EventError whose message says what is wrong, for the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import unicodedata
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from columnist.errors import BadInput
from columnist.printable import printable

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 1_048_576
"""Kafka's default message size: nothing larger can be a columnist event (data: URIs included)."""
MAX_DEPTH = 32
"""Nesting of JSON objects and arrays; ``meta`` is for flat facts such as a mission name."""
MAX_META_BYTES = 16_384
MAX_DEAD_LETTER_EVENT = 65_536
"""The original event is kept whole up to this size in a dead letter; beyond it, its head,
its size and its sha256 (a dead letter must itself fit in a Kafka message)."""
MAX_REASON = 2_000


class EventError(BadInput, ValueError):
    """An event that cannot be processed; the message is the dead-letter reason."""


class ImageEvent(BaseModel):
    """``columnist.images``, key = image_id: an image to store, or (``deleted``) one to forget."""

    model_config = ConfigDict(extra="ignore")

    schema_: Literal[1] = Field(1, alias="schema")
    image_id: str = Field(min_length=1, max_length=1024)
    uri: str = ""
    collection: str = Field("", max_length=256)
    meta: dict[str, Any] = {}
    deleted: StrictBool = False
    """The image is gone (`columnist watch` saw its file deleted or moved): its rows are deleted.
    JSON true or false only: a deletion is not inferred from "yes", "on" or 1."""

    @model_validator(mode="after")
    def _uri_unless_deleted(self) -> "ImageEvent":
        if not self.deleted and not self.uri:
            raise ValueError("uri: missing (an event without one must say deleted: true)")
        return self

    @field_validator("image_id")
    @classmethod
    def _not_a_frame_id(cls, image_id: str) -> str:
        from columnist.models.video import parse_frame_id

        if parse_frame_id(image_id):
            raise ValueError("has the form of a video frame's id (<video id>#t=<seconds>), which columnist gives "
                             "the frames it samples from videos: choose another")
        return image_id

    @field_validator("uri")
    @classmethod
    def _text(cls, uri: str) -> str:
        try:
            uri.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not valid Unicode text (a lone surrogate escape); a file name's bytes that are "
                             "not UTF-8 are percent-encoded in a URI (file:///photos/m%FFoon.jpg)") from None
        if re.search("[\x00-\x1f\x7f]", uri):  # the URL parser drops tabs and newlines: another file
            raise ValueError("holds a control character (a tab, a newline, …): percent-encode it (%0A)")
        return uri

    @field_validator("meta")
    @classmethod
    def _bounded_meta(cls, meta: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(meta)) > MAX_META_BYTES:
            raise ValueError(f"over {MAX_META_BYTES:,} bytes of JSON")
        return meta


class VocabEvent(BaseModel):
    """``columnist.vocab`` (compacted), key = vocabulary name: the whole document."""

    model_config = ConfigDict(extra="ignore")

    schema_: Literal[1] = Field(1, alias="schema")
    name: str = Field(max_length=256)
    version: int
    content_hash: str = Field(max_length=128)
    document: dict[str, Any]


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        if not e["loc"] and e["type"] == "value_error":  # a check over the whole event names its own field
            parts.append(str(e["ctx"]["error"]))
            continue
        field = ".".join(str(p) for p in e["loc"]) or "event"
        parts.append(f"{field}: {'missing' if e['type'] == 'missing' else e['msg']}")
    return "; ".join(parts)


def nesting_depth(raw: bytes) -> int:
    """How deeply objects and arrays nest, counted without parsing (strings skipped), so a
    document nested 100,000 deep is refused before the recursive JSON parser sees it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest


def _parse(raw: bytes | str | None, model: type[BaseModel]) -> Any:
    if raw is None:
        raise EventError("empty event (a tombstone: a key with no value)")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(f"event is {len(raw):,} bytes, over the limit of {MAX_EVENT_BYTES:,}")
    if nesting_depth(raw) > MAX_DEPTH:
        raise EventError(f"JSON nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # ValueError: bad JSON, 4,300+ digit integers
        raise EventError(f"not valid JSON: {str(err)[:200]}") from None
    if not isinstance(data, dict):
        raise EventError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise EventError(_describe(err)[:MAX_REASON]) from None


def parse_image_event(raw: bytes | str | None) -> ImageEvent:
    return _parse(raw, ImageEvent)


def parse_vocab_event(raw: bytes | str | None) -> VocabEvent:
    return _parse(raw, VocabEvent)


def check_key(key: bytes | None, expected: str, what: str, how: str, empty_is_none: bool = True) -> None:
    """Refuse an event keyed by anything but its ``what`` (an image's id, a vocabulary's name;
    ``how``: the command that keys them so). Kafka keeps one key's events in order on one
    partition, and compacts the vocabulary topic by key: an image's delete keyed otherwise
    could be applied before the event that stored it, and a vocabulary keyed otherwise would
    outlive its newer versions. An event without a key is taken (the worker counts image events
    so): on one partition it is in order; so is one with an empty key (``kcat -k ''``) where
    ``empty_is_none`` (not on the compacted topic, where every empty-keyed document is one).

    The reason begins with what is wrong, the same words for every key (`columnist
    deadletters` counts letters by them), and ends with the key and the event's ``what``."""
    if key is None or (empty_is_none and not key) or key == expected.encode("utf-8", "surrogatepass"):
        return
    text = key.decode("utf-8", "backslashreplace")
    shown, wanted = printable(text, 100), printable(expected, 100)
    if unicodedata.normalize("NFC", shown) == unicodedata.normalize("NFC", wanted):  # another Unicode form
        # of the same text (NFD, NFC), which a terminal shows alike: told apart by its code points
        shown, wanted = ascii(text)[1:-1][:100], ascii(expected)[1:-1][:100]
    raise EventError(f"not keyed by its {what}: Kafka may reorder it with that {what}'s other events; key each "
                     f"event by its {what}, as {how} does (key '{shown}', {what} '{wanted}')")


def image_event(image_id: str, uri: str, collection: str = "", meta: dict | None = None) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "image_id": image_id, "uri": uri,
                       "collection": collection, "meta": meta or {}}).encode()


def delete_event(image_id: str) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "image_id": image_id, "deleted": True}).encode()


def vocab_event(vocab) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "name": vocab.name, "version": vocab.version,
                       "content_hash": vocab.content_hash(), "document": vocab.model_dump(mode="json")}).encode()


MODEL_KEY = b"columnist.model"
"""The key of model events on the vocabulary topic (not a vocabulary name: those have no dot)."""


class ModelEvent(BaseModel):
    """A model migration's step, for every worker: ``migrate`` (to), ``cutover`` (to, force),
    ``retire`` (model). The store holds the state; the event says what to do next."""

    model_config = ConfigDict(extra="ignore")

    schema_: Literal[1] = Field(1, alias="schema")
    kind: Literal["model"]
    action: Literal["migrate", "cutover", "retire"]
    to: str = Field("", max_length=4096)
    model: str = Field("", max_length=4096)
    force: bool = False

    @model_validator(mode="after")
    def _names_its_model(self) -> "ModelEvent":
        field = "model" if self.action == "retire" else "to"
        if not getattr(self, field).strip():
            raise ValueError(f"{field}: a {self.action} event names its model")
        return self


def parse_model_event(raw: bytes | str | None) -> ModelEvent:
    return _parse(raw, ModelEvent)


def model_event(command: dict) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "kind": "model", **command}).encode()


def _original(raw: bytes | None) -> dict[str, Any]:
    """The original event as text (hex when it is not UTF-8); a large one is cut to its head,
    with its size and sha256 kept."""
    if raw is None:
        return {"event": None}
    if len(raw) <= MAX_DEAD_LETTER_EVENT:
        try:
            return {"event": raw.decode("utf-8")}
        except UnicodeDecodeError:
            if len(raw) <= MAX_DEAD_LETTER_EVENT // 2:
                return {"event": raw.hex()}
    head = raw[:MAX_DEAD_LETTER_EVENT // 4].decode("utf-8", errors="replace")
    return {"event": head, "event_truncated": True, "event_bytes": len(raw),
            "event_sha256": hashlib.sha256(raw).hexdigest()}


def _key_text(key: Any) -> str | None:
    """A Kafka key as text in a dead letter, its first 1,024 bytes (Kafka's sources give bytes;
    whatever else a source gives is shown as text: a letter is written whatever the event was)."""
    if key is None:
        return None
    if isinstance(key, (bytes, bytearray)):
        return bytes(key[:1024]).decode("utf-8", "backslashreplace")
    return str(key)[:1024]


def dead_letter(raw: bytes | None, topic: str, error: Exception, partition: int | None = None,
                offset: int | None = None, image_id: str | None = None, group: str = "",
                key: bytes | None = None) -> bytes:
    """The original event and its Kafka key (bounded), the error class and message, where it
    came from, the worker, its consumer group and the time. Always well under Kafka's message
    size, whatever the event was."""
    return json.dumps({
        "schema": SCHEMA_VERSION, "topic": topic, "partition": partition, "offset": offset,
        "key": _key_text(key),
        "image_id": image_id[:1024] if image_id else image_id, **_original(raw),
        "error": type(error).__name__, "reason": str(error)[:MAX_REASON],
        "worker": f"{socket.gethostname()}:{os.getpid()}", "group": group[:256],
        "time": datetime.now(timezone.utc).isoformat(),
    }).encode()
