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
    assert binary["event"] == "ff00" and binary["key"] is None
    keyed = json.loads(dead_letter(b"{}", "t", ValueError("bad"), key=b"k\xff" + b"x" * 5000))
    assert keyed["key"] == "k\\xff" + "x" * 1022  # its first 1,024 bytes, as text
    assert json.loads(dead_letter(b"{}", "t", ValueError("bad"), key="a str"))["key"] == "a str"  # not bytes: still a letter


def test_an_event_is_keyed_by_its_id_or_not_at_all():
    from columnist.kafka.deadletters import kind_of_reason

    for unkeyed in (None, b""):  # no key, or an empty one (kcat -k ''): in order on one partition, taken
        check_key(unkeyed, "img-1", "image_id", "publish")
    check_key("café-1".encode(), "café-1", "image_id", "publish")
    with pytest.raises(EventError, match="not keyed by its vocabulary name"):  # compacted: one empty key for all
        check_key(b"", "space", "vocabulary name", "push", empty_is_none=False)
    with pytest.raises(EventError) as refused:
        check_key(b"img-2", "img-1", "image_id", "publish")
    assert str(refused.value).startswith("not keyed by its image_id: Kafka may reorder it")
    assert str(refused.value).endswith("(key 'img-2', image_id 'img-1')")
    with pytest.raises(EventError) as other:  # any other key, ': ' in it too: the same kind of dead letter
        check_key(b"a: b", "img-9", "image_id", "publish")
    assert kind_of_reason({"error": "EventError", "reason": str(refused.value)}) == \
        kind_of_reason({"error": "EventError", "reason": str(other.value)})
    with pytest.raises(EventError) as escaped:  # not UTF-8, and a terminal escape
        check_key(b"caf\xe9\x1b[2J", "img-1", "image_id", "publish")
    assert "(key 'caf\\xe9\\x1b[2J', image_id 'img-1')" in str(escaped.value)
    nfd, nfc = "cafe\u0301", "caf\u00e9"  # one text, two Unicode forms: shown by their code points
    with pytest.raises(EventError) as forms:
        check_key(nfd.encode(), nfc, "image_id", "publish")
    assert "(key 'cafe\\u0301', image_id 'caf\\xe9')" in str(forms.value)
    with pytest.raises(EventError, match="not keyed"):  # an id no producer can key by: refused, not a crash
        check_key(b"x", "a\ud800", "image_id", "publish")
