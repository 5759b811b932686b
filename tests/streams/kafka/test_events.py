import json

import pytest

from columnist.kafka.events import EventError, check_key, dead_letter, image_event, parse_image_event, parse_vocab_event


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


def test_an_event_is_keyed_by_its_id_or_not_at_all():
    check_key(None, "img-1", "image_id")  # unkeyed: in order on one partition, taken
    check_key("café-1".encode(), "café-1", "image_id")
    with pytest.raises(EventError, match=r"key: 'img-2' is not this event's image_id \('img-1'\)"):
        check_key(b"img-2", "img-1", "image_id")
    with pytest.raises(EventError) as refused:  # not UTF-8, and a terminal escape
        check_key(b"caf\xe9\x1b[2J", "img-1", "image_id")
    assert "key: 'caf\\xe9\\x1b[2J' is not" in str(refused.value)
