"""The JSON events on columnist's topics, and their parsing into typed records.

Plain JSON with a ``schema`` version, so any producer works (kcat, another service).
Every parse failure becomes an EventError whose message says what is wrong, for the
dead-letter topic.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1


class EventError(ValueError):
    """An event that cannot be processed; the message is the dead-letter reason."""


class ImageEvent(BaseModel):
    """``columnist.images``, key = image_id."""

    model_config = ConfigDict(extra="ignore")

    schema_: Literal[1] = Field(1, alias="schema")
    image_id: str = Field(min_length=1, max_length=1024)
    uri: str = Field(min_length=1)
    collection: str = ""
    meta: dict[str, Any] = {}


class VocabEvent(BaseModel):
    """``columnist.vocab`` (compacted), key = vocabulary name: the whole document."""

    model_config = ConfigDict(extra="ignore")

    schema_: Literal[1] = Field(1, alias="schema")
    name: str
    version: int
    content_hash: str
    document: dict[str, Any]


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "event"
        parts.append(f"{field}: {'missing' if e['type'] == 'missing' else e['msg']}")
    return "; ".join(parts)


def _parse(raw: bytes | str, model: type[BaseModel]) -> Any:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EventError(f"not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise EventError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise EventError(_describe(err)) from None


def parse_image_event(raw: bytes | str) -> ImageEvent:
    return _parse(raw, ImageEvent)


def parse_vocab_event(raw: bytes | str) -> VocabEvent:
    return _parse(raw, VocabEvent)


def image_event(image_id: str, uri: str, collection: str = "", meta: dict | None = None) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "image_id": image_id, "uri": uri,
                       "collection": collection, "meta": meta or {}}).encode()


def vocab_event(vocab) -> bytes:
    return json.dumps({"schema": SCHEMA_VERSION, "name": vocab.name, "version": vocab.version,
                       "content_hash": vocab.content_hash(), "document": vocab.model_dump(mode="json")}).encode()


def dead_letter(raw: bytes, topic: str, error: Exception, partition: int | None = None,
                offset: int | None = None, image_id: str | None = None) -> bytes:
    """The original event with the error class and message, the worker and the time."""
    try:
        original: Any = raw.decode("utf-8")
    except UnicodeDecodeError:
        original = raw.hex()
    return json.dumps({
        "schema": SCHEMA_VERSION, "topic": topic, "partition": partition, "offset": offset,
        "image_id": image_id, "event": original, "error": type(error).__name__, "reason": str(error),
        "worker": f"{socket.gethostname()}:{os.getpid()}", "time": datetime.now(timezone.utc).isoformat(),
    }).encode()
