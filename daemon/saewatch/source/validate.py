"""Raw message bytes -> a validated :class:`~saewatch.models.Record` or an :class:`InvalidRecord`.

Every source (Kafka, file replay) runs each message through :func:`validate` inside its poll loop,
so a poison message never blocks a partition: it becomes an ``InvalidRecord`` with one of four
reasons, checked in this order:

``oversize``
    the message is longer than ``max_bytes`` (checked before anything is parsed);
``encoding``
    the bytes are not UTF-8;
``invalid_json``
    the text is not one JSON document (an empty message included);
``schema``
    the JSON is not a valid :class:`~saewatch.models.LLMEvent` (strict: unknown fields, wrong
    types, naive timestamps and bad metadata are rejected).

Texts longer than ``max_chars`` are cut to that many characters, never rejected; the cut fields
are listed in :attr:`Record.truncated_fields <saewatch.models.Record.truncated_fields>`.

>>> from saewatch.models import SourcePosition
>>> pos = SourcePosition(topic="llm-events", partition=0, offset=7)
>>> ok = validate(b'{"event_id": "e1", "timestamp": "2026-11-20T10:00:00Z", "model_id": "bot",'
...               b' "model_version": "v1", "prompt": "Hi", "response": "Hello there"}',
...               pos, max_chars=16, max_bytes=1024)
>>> ok.event.response, ok.truncated_fields
('Hello there', ())
>>> bad = validate(b'{"event_id": ', pos, max_chars=16, max_bytes=1024)
>>> bad.reason, str(bad.position)
('invalid_json', 'llm-events[0]@7')
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from saewatch.models import (
    TEXT_FIELDS,
    InvalidReason,
    InvalidRecord,
    LLMEvent,
    Record,
    SourcePosition,
    TextField,
)

logger = logging.getLogger(__name__)

# Error messages travel in dead-letter headers and log lines: keep them short enough for both.
MAX_ERROR_CHARS = 1_000


def validate(
    raw: bytes | None,
    position: SourcePosition,
    *,
    max_chars: int,
    max_bytes: int,
    key: bytes | None = None,
) -> Record | InvalidRecord:
    """Validate one message.

    Parameters
    ----------
    raw
        The message value exactly as read (``None`` for a Kafka tombstone).
    position
        Where it was read; carried into the result.
    max_chars
        Longest prompt or response kept, in characters; longer ones are truncated.
    max_bytes
        Longest message accepted, in bytes.
    key
        The message key, kept on an invalid record so the dead letter is an exact copy.

    Returns
    -------
    Record | InvalidRecord
        A record whose event passed strict validation, or the reason it did not.
    """
    if raw is None or len(raw) == 0:
        return _invalid(position, "invalid_json", "empty message (no JSON document)", raw, key)
    if len(raw) > max_bytes:
        error = f"message is {len(raw)} bytes; the limit is {max_bytes} (kafka.max_message_bytes)"
        return _invalid(position, "oversize", error, raw, key)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        error = f"not UTF-8: {exc.reason} at byte {exc.start}"
        return _invalid(position, "encoding", error, raw, key)
    try:
        event = LLMEvent.model_validate_json(text)
    except ValidationError as exc:
        reason: InvalidReason = "invalid_json" if _is_json_error(exc) else "schema"
        return _invalid(position, reason, describe_errors(exc), raw, key)
    event, cut = truncate(event, max_chars)
    return Record(event=event, position=position, truncated_fields=cut)


def truncate(event: LLMEvent, max_chars: int) -> tuple[LLMEvent, tuple[TextField, ...]]:
    """Cut the prompt and response to ``max_chars`` characters.

    Returns the (possibly new) event and the names of the fields that were cut.

    >>> from datetime import datetime, timezone
    >>> e = LLMEvent(event_id="e", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...              model_id="m", model_version="v", prompt="short", response="x" * 50)
    >>> cut, fields = truncate(e, 20)
    >>> len(cut.response), cut.prompt, fields
    (20, 'short', ('response',))
    """
    cut = tuple(f for f in TEXT_FIELDS if len(event.text(f)) > max_chars)
    if not cut:
        return event, ()
    update: dict[str, str] = {f: event.text(f)[:max_chars] for f in cut}
    return event.model_copy(update=update), cut


def describe_errors(exc: ValidationError) -> str:
    """One line naming every invalid field and why, e.g. ``timestamp: Input should ...``."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{loc}: {err['msg']}")
    message = "; ".join(parts)
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return message


def _is_json_error(exc: ValidationError) -> bool:
    # A syntax error is reported as one error at the top level; a document that is JSON but not
    # an object is a shape problem and counts as a schema violation.
    return any(e["type"] == "json_invalid" for e in exc.errors(include_url=False))


def _invalid(
    position: SourcePosition,
    reason: InvalidReason,
    error: str,
    raw: bytes | None,
    key: bytes | None,
) -> InvalidRecord:
    logger.info("invalid record %s: %s: %s", position, reason, error)
    return InvalidRecord(position=position, reason=reason, error=error, raw=raw or b"", key=key)


# (message value, position, max_chars, max_bytes, key) -> a record or an invalid record: how a
# Kafka source turns a message into a record (events here; features messages in the aggregator).
Decoder = Callable[[bytes | None, SourcePosition, int, int, bytes | None], Record | InvalidRecord]


def validate_event(
    raw: bytes | None, position: SourcePosition, max_chars: int, max_bytes: int,
    key: bytes | None,
) -> Record | InvalidRecord:
    """:func:`validate` with a :data:`Decoder`'s positional signature (the default decoder)."""
    return validate(raw, position, max_chars=max_chars, max_bytes=max_bytes, key=key)
