"""validate(): every kind of bad input gets its reason and a readable error; texts are truncated."""

from __future__ import annotations

import json

import pytest

from saewatch.models import InvalidRecord, Record, SourcePosition
from saewatch.source.validate import MAX_ERROR_CHARS, validate

POS = SourcePosition(topic="events", partition=3, offset=41)
GOOD = {
    "event_id": "e-1",
    "timestamp": "2026-11-20T10:00:00+01:00",
    "model_id": "support-bot",
    "model_version": "2026-11-20",
    "prompt": "How do I reset my password?",
    "response": "Open Settings, then Security.",
    "conversation_id": "c-9",
    "metadata": {"tenant": "acme", "locale": "de-DE"},
}


def _raw(**changes: object) -> bytes:
    event = {k: v for k, v in (GOOD | changes).items() if v is not ...}
    return json.dumps(event).encode()


def _check(raw: bytes | None, **kw: int) -> Record | InvalidRecord:
    return validate(
        raw, POS, max_chars=kw.get("max_chars", 1000), max_bytes=kw.get("max_bytes", 4096), key=b"k"
    )


def test_valid_event_keeps_every_field() -> None:
    result = _check(_raw())
    assert isinstance(result, Record)
    assert result.position == POS
    assert result.truncated_fields == ()
    e = result.event
    assert (e.event_id, e.model_id, e.model_version) == ("e-1", "support-bot", "2026-11-20")
    assert e.timestamp.utcoffset().total_seconds() == 3600
    assert e.metadata == {"tenant": "acme", "locale": "de-DE"}


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b'{"event_id": "e-1",', "invalid_json", "Invalid JSON"),
        (b"", "invalid_json", "empty message"),
        (None, "invalid_json", "empty message"),
        (b"not json at all", "invalid_json", "Invalid JSON"),
        (b'{"a": 1} {"b": 2}', "invalid_json", "trailing characters"),
        (b"\xff\xfe\x00{", "encoding", "not UTF-8"),
        (b'{"event_id": "caf\xe9"}', "encoding", "not UTF-8: invalid continuation byte at byte 17"),
        (b"[1, 2]", "schema", "Input should be an object"),
        (
            _raw(timestamp="2026-11-20T10:00:00"),
            "schema",
            "timestamp: Input should have timezone info",
        ),
        (_raw(timestamp="yesterday"), "schema", "timestamp:"),
        (_raw(response=...), "schema", "response: Field required"),
        (_raw(prompt=42), "schema", "prompt: Input should be a valid string"),
        (_raw(event_id=""), "schema", "event_id: String should have at least 1 character"),
        (_raw(model_id="has space"), "schema", "model_id: String should match pattern"),
        (_raw(extra="x"), "schema", "extra: Extra inputs are not permitted"),
        (_raw(metadata={"tenant": 7}), "schema", "metadata.tenant: Input should be a valid string"),
        (_raw(metadata={f"k{i}": "v" for i in range(17)}), "schema", "at most 16 are allowed"),
    ],
)
def test_bad_input_gets_reason_and_message(raw: bytes | None, reason: str, fragment: str) -> None:
    result = _check(raw)
    assert isinstance(result, InvalidRecord)
    assert result.reason == reason
    assert fragment in result.error
    assert result.position == POS
    assert result.key == b"k"
    assert result.raw == (raw or b"")


def test_oversize_is_checked_before_parsing() -> None:
    raw = _raw(response="x" * 5000)
    result = _check(raw, max_bytes=4096)
    assert isinstance(result, InvalidRecord)
    assert result.reason == "oversize"
    assert (
        result.error == f"message is {len(raw)} bytes; the limit is 4096 (kafka.max_message_bytes)"
    )
    assert result.raw == raw  # unchanged for the dead-letter topic
    # Even garbage that is too large is "oversize": the size is all that was looked at.
    garbage = _check(b"\xff" * 5000, max_bytes=4096)
    assert isinstance(garbage, InvalidRecord) and garbage.reason == "oversize"


def test_exactly_max_bytes_is_accepted() -> None:
    raw = _raw()
    assert isinstance(_check(raw, max_bytes=len(raw)), Record)
    assert isinstance(_check(raw, max_bytes=len(raw) - 1), InvalidRecord)


def test_long_texts_are_truncated_and_listed() -> None:
    result = _check(_raw(prompt="p" * 30, response="é" * 50), max_chars=20)
    assert isinstance(result, Record)
    assert result.truncated_fields == ("prompt", "response")
    assert result.event.prompt == "p" * 20
    assert result.event.response == "é" * 20  # characters, not bytes
    only_response = _check(_raw(prompt="short", response="r" * 21), max_chars=20)
    assert isinstance(only_response, Record)
    assert only_response.truncated_fields == ("response",)
    assert only_response.event.prompt == "short"


def test_text_at_the_limit_is_not_truncated() -> None:
    result = _check(_raw(prompt="a" * 20, response="b" * 20), max_chars=20)
    assert isinstance(result, Record)
    assert result.truncated_fields == ()


def test_error_messages_are_bounded() -> None:
    many = {f"field_{i:03d}_{'x' * 40}": i for i in range(100)}
    result = _check(json.dumps(many).encode(), max_bytes=100_000)
    assert isinstance(result, InvalidRecord)
    assert result.reason == "schema"
    assert len(result.error) == MAX_ERROR_CHARS
    assert result.error.endswith("...")
