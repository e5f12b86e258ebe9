"""The features topic's wire format: one JSON message per encoded event.

``saewatch encode`` publishes, ``saewatch aggregate`` reads. A message carries the event (its texts
are needed for example snippets and retrieval), the encoder's id and width, and the CSR row of each
text field::

    {"format": 1, "encoder_id": "...", "d_sae": 4096, "event": {...LLMEvent...},
     "prompt": {"indices": [3, 17], "values": [1.5, 0.25], "n_tokens": 12, "truncated": false},
     "response": {...}}

JSON keeps the topic readable with any Kafka tool; a row of ~50 active features is ~0.5 KB, small
next to the texts. Values are float16 on both sides, so a round trip is exact.

>>> from saewatch.models import SparseCodes
>>> e = LLMEvent.model_validate_json('{"event_id": "e1", "timestamp": "2026-11-20T10:00:00Z", '
...     '"model_id": "bot", "model_version": "v1", "prompt": "Hi", "response": "Hello"}')
>>> codes = SparseCodes.from_rows([[3, 17]], [[1.5, 0.25]], n_tokens=[2])
>>> batch = FeatureBatch(encoder_id="enc", d_sae=32, events=(e,), prompt=codes, response=codes)
>>> key, value = encode_messages(batch)[0]
>>> decoded = decode_messages([value])
>>> key, decoded.response.row(0)[0].tolist(), decoded.events[0] == e
(b'bot', [3, 17], True)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saewatch.errors import SaewatchError
from saewatch.models import (
    TEXT_FIELDS,
    FeatureBatch,
    InvalidReason,
    InvalidRecord,
    LLMEvent,
    Record,
    SourcePosition,
    SparseCodes,
)

FORMAT_VERSION = 1


class CodecError(SaewatchError):
    """A features message cannot be decoded; it goes to the features dead-letter topic."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    indices: list[int]
    values: list[float]
    n_tokens: int = Field(ge=0)
    truncated: bool


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int
    encoder_id: str
    d_sae: int = Field(gt=0)
    event: LLMEvent
    prompt: _Row
    response: _Row


def encode_messages(batch: FeatureBatch) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` per event; the key is the model_id, so a model's events share a partition."""
    out: list[tuple[bytes, bytes]] = []
    for i, event in enumerate(batch.events):
        body: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "encoder_id": batch.encoder_id,
            "d_sae": batch.d_sae,
            "event": event.model_dump(mode="json"),
        }
        for name in TEXT_FIELDS:
            codes = batch.codes(name)
            idx, val = codes.row(i)
            body[name] = {
                "indices": idx.tolist(),
                "values": val.astype(np.float32).tolist(),
                "n_tokens": int(codes.n_tokens[i]),
                "truncated": bool(codes.truncated[i]),
            }
        out.append((event.model_id.encode(), json.dumps(body, separators=(",", ":")).encode()))
    return out


def decode_message(value: bytes) -> _Message:
    """Parse and check one message; raises :class:`CodecError` saying what is wrong."""
    try:
        message = _Message.model_validate_json(value)
    except ValidationError as exc:
        raise CodecError(f"not a saewatch features message: {exc.errors()[0]['msg']}") from exc
    if message.format != FORMAT_VERSION:
        raise CodecError(
            f"features message format {message.format}, this saewatch reads {FORMAT_VERSION}: "
            "run encoders and aggregator of the same release"
        )
    for name in TEXT_FIELDS:
        row: _Row = getattr(message, name)
        if len(row.indices) != len(row.values):
            raise CodecError(f"{name}: indices and values differ in length")
        if row.indices and not 0 <= min(row.indices) <= max(row.indices) < message.d_sae:
            raise CodecError(f"{name}: feature ids outside [0, {message.d_sae})")
    return message


def decode_messages(values: Sequence[bytes]) -> FeatureBatch:
    """One :class:`FeatureBatch` from messages of one encoder (raises :class:`CodecError`)."""
    return assemble([decode_message(v) for v in values])


def decode_record(
    raw: bytes | None, position: SourcePosition, max_chars: int, max_bytes: int,
    key: bytes | None = None,
) -> Record | InvalidRecord:
    """A features-topic message as a :class:`Record` carrying its codes, or why it is invalid.

    The signature is the Kafka source's decoder hook; ``max_chars`` does not apply (the encoder
    truncated the texts already).
    """
    value = raw or b""
    reason: InvalidReason | None = None
    if len(value) > max_bytes:
        reason, error = "oversize", f"{len(value)} bytes > max_message_bytes {max_bytes}"
    else:
        try:
            message = decode_message(value)
        except CodecError as exc:
            reason, error = "schema", str(exc)
    if reason is not None:
        return InvalidRecord(position=position, reason=reason, error=error, raw=value, key=key)
    return Record(event=message.event, position=position, codes=assemble([message]))


def assemble(messages: Sequence[_Message]) -> FeatureBatch:
    if not messages:
        raise CodecError("no messages to assemble")
    first = messages[0]
    for m in messages:
        if (m.encoder_id, m.d_sae) != (first.encoder_id, first.d_sae):
            raise CodecError(f"messages of two encoders in one batch: {m.encoder_id!r}")
    fields = {}
    for name in TEXT_FIELDS:
        rows = [getattr(m, name) for m in messages]
        fields[name] = SparseCodes.from_rows(
            [r.indices for r in rows], [r.values for r in rows],
            n_tokens=[r.n_tokens for r in rows], truncated=[r.truncated for r in rows],
        )
    return FeatureBatch(
        encoder_id=first.encoder_id,
        d_sae=first.d_sae,
        events=tuple(m.event for m in messages),
        **fields,
    )
