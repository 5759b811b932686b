import json

import pytest

from columnist.kafka.events import EventError, dead_letter, image_event, parse_image_event, parse_vocab_event


def test_round_trip():
    event = parse_image_event(image_event("a1", "file:///x/a1.jpg", "apollo", {"mission": 11}))
    assert (event.image_id, event.uri, event.collection, event.meta) == ("a1", "file:///x/a1.jpg", "apollo", {"mission": 11})


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"schema": 1, "uri": "file:///a"}', "image_id: missing"),
    (b'{"schema": 2, "image_id": "a", "uri": "file:///a"}', "schema"),
    (b'{"schema": 1, "image_id": "", "uri": "file:///a"}', "image_id"),
])
def test_bad_image_events(raw, reason):
    with pytest.raises(EventError, match=reason):
        parse_image_event(raw)


def test_bad_vocab_event():
    with pytest.raises(EventError, match="document: missing"):
        parse_vocab_event(b'{"schema": 1, "name": "space", "version": 2, "content_hash": "x"}')


def test_dead_letter_keeps_the_original_and_names_the_error():
    letter = json.loads(dead_letter(b'{"broken', "columnist.images", EventError("not valid JSON: x"), 1, 42, "a1"))
    assert letter["event"] == '{"broken' and letter["error"] == "EventError" and letter["reason"] == "not valid JSON: x"
    assert (letter["topic"], letter["partition"], letter["offset"], letter["image_id"]) == ("columnist.images", 1, 42, "a1")
    assert letter["worker"] and letter["time"]
    binary = json.loads(dead_letter(b"\xff\x00", "t", ValueError("bad")))
    assert binary["event"] == "ff00"
