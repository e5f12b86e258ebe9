"""The features topic's wire format: one JSON message per encoded event.

``saewatch encode`` publishes, ``saewatch aggregate`` reads. A message carries the event (its texts
are needed for example snippets and retrieval), the encoder's id and width, and the CSR row of each
text field, its arrays as base64 of their little-endian bytes (int32 ids, float16 values)::

    {"format": 2, "encoder_id": "...", "d_sae": 4096, "event": {...LLMEvent...},
     "prompt": {"indices": "AwAAABEAAAA=", "values": "AD4ANA==", "n_tokens": 12,
                "truncated": false},
     "response": {...}}

JSON keeps the event readable with any Kafka tool. The arrays are binary because the shipped SAE's
document codes are dense (~2,000 active features per response): as JSON numbers they made 40 KB
messages that took ~1 ms to write and ~0.5 ms to parse per event, more than an aggregator can
afford behind GPU encoders; as base64 they are ~4x smaller and decode with one ``frombuffer``.
Format 1 (the same rows as JSON lists) is still read, so encoders can be upgraded after the
aggregator. Values are float16 on both sides, so a round trip is exact.

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

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saewatch.errors import CodecError as CodecError  # re-exported: callers catch it here
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

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: indices and values as JSON lists
_INDEX = np.dtype("<i4")
_VALUE = np.dtype("<f2")


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    indices: str | list[int]  # base64 of little-endian int32 (format 2) or a list (format 1)
    values: str | list[float]  # base64 of little-endian float16 (format 2) or a list (format 1)
    n_tokens: int = Field(ge=0)
    truncated: bool

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Feature ids and values (little-endian int32 and float16, read-only views of the
        decoded bytes); raises :class:`CodecError` if malformed."""
        return (_array(self.indices, _INDEX, f"{name}.indices"),
                _array(self.values, _VALUE, f"{name}.values"))


def _array(data: str | list[float] | list[int], dtype: np.dtype, what: str) -> np.ndarray:
    if isinstance(data, list):
        return np.asarray(data, dtype=dtype)
    try:  # base64.b64decode(validate=True) is this call behind a Python wrapper
        raw = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise CodecError(f"{what}: not base64 ({exc})") from exc
    if len(raw) % dtype.itemsize:
        raise CodecError(f"{what}: {len(raw)} bytes is not a whole number of {dtype} values")
    return np.frombuffer(raw, dtype=dtype)


def _b64(array: np.ndarray, dtype: np.dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


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
                "indices": _b64(idx, _INDEX),
                "values": _b64(val, _VALUE),
                "n_tokens": int(codes.n_tokens[i]),
                "truncated": bool(codes.truncated[i]),
            }
        out.append((event.model_id.encode(), json.dumps(body, separators=(",", ":")).encode()))
    return out


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A checked message with its rows as arrays (built by :func:`decode_message` only, after
    every check: a plain dataclass, so the aggregator does not validate each message twice)."""

    encoder_id: str
    d_sae: int
    event: LLMEvent
    rows: dict[str, tuple[np.ndarray, np.ndarray, int, bool]]


def decode_message(value: bytes) -> _Decoded:
    """Parse and check one message; raises :class:`CodecError` saying what is wrong."""
    try:
        message = _Message.model_validate_json(value)
    except ValidationError as exc:
        raise CodecError(f"not a saewatch features message: {exc.errors()[0]['msg']}") from exc
    if message.format not in READABLE_FORMATS:
        raise CodecError(
            f"features message format {message.format}, this saewatch reads "
            f"{' and '.join(map(str, READABLE_FORMATS))}: upgrade the aggregator first"
        )
    rows: dict[str, tuple[np.ndarray, np.ndarray, int, bool]] = {}
    for name in TEXT_FIELDS:
        row: _Row = getattr(message, name)
        indices, values = row.arrays(name)
        if len(indices) != len(values):
            raise CodecError(f"{name}: indices and values differ in length")
        # One reduction: as unsigned, a negative id is >= 2**31, above any d_sae.
        if len(indices) and np.maximum.reduce(indices.view(np.uint32)) >= message.d_sae:
            raise CodecError(f"{name}: feature ids outside [0, {message.d_sae})")
        rows[name] = (indices, values, row.n_tokens, row.truncated)
    return _Decoded(encoder_id=message.encoder_id, d_sae=message.d_sae, event=message.event,
                    rows=rows)


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
    return Record(event=message.event, position=position, codes=_one_event(message))


class FeaturesDecoder:
    """The aggregator's decoder hook: :func:`decode_record`, held to one encoder.

    Counts of two SAEs cannot be added, so a message of another encoder than the one this
    aggregator counts (say, a new SAE rolled out to some encode replicas) is invalid with reason
    ``encoder``: dead-lettered and counted like any bad record, where it used to stop the
    aggregator on every restart. The encoder is the restored state's (``bound``), else the first
    valid message's.

    >>> from saewatch.models import SourcePosition, SparseCodes
    >>> e = LLMEvent.model_validate_json('{"event_id": "e1", "timestamp": "2026-11-20T10:00:00Z",'
    ...     ' "model_id": "bot", "model_version": "v1", "prompt": "Hi", "response": "Hello"}')
    >>> codes = SparseCodes.from_rows([[3]], [[1.5]], n_tokens=[2])
    >>> def message(encoder_id: str) -> bytes:
    ...     batch = FeatureBatch(encoder_id=encoder_id, d_sae=32, events=(e,), prompt=codes,
    ...                          response=codes)
    ...     return encode_messages(batch)[0][1]
    >>> decode = FeaturesDecoder(bound=("sae-a", 32))
    >>> where = SourcePosition(topic="llm-features", partition=0, offset=7)
    >>> decode(message("sae-a"), where, 8_000, 1_048_576).codes.encoder_id
    'sae-a'
    >>> decode(message("sae-b"), where, 8_000, 1_048_576).reason
    'encoder'
    """

    def __init__(self, bound: tuple[str, int] | None = None) -> None:
        self.bound = bound

    def __call__(
        self, raw: bytes | None, position: SourcePosition, max_chars: int, max_bytes: int,
        key: bytes | None = None,
    ) -> Record | InvalidRecord:
        result = decode_record(raw, position, max_chars, max_bytes, key)
        if isinstance(result, InvalidRecord) or result.codes is None:
            return result
        identity = (result.codes.encoder_id, result.codes.d_sae)
        if self.bound is None:
            self.bound = identity
        elif identity != self.bound:
            error = (
                f"features of encoder {identity[0]!r} (d_sae={identity[1]}), but this aggregator "
                f"counts {self.bound[0]!r} (d_sae={self.bound[1]}): run another aggregator, with "
                "its own kafka.group_id and state.snapshot_dir, for the new encoder"
            )
            return InvalidRecord(position=position, reason="encoder", error=error,
                                 raw=raw or b"", key=key)
        return result


def _one_event(message: _Decoded) -> FeatureBatch:
    """:func:`assemble` of one message, built directly: the aggregator's per-message path
    (``from_arrays``' concatenations and cumulative sums cost more than the row itself)."""
    fields = {}
    for name in TEXT_FIELDS:
        indices, values, n_tokens, truncated = message.rows[name]
        fields[name] = SparseCodes(
            indptr=np.array([0, len(indices)], dtype=np.int64),
            indices=indices.astype(np.int32, copy=False),
            values=values.astype(np.float16, copy=False),
            n_tokens=np.array([n_tokens], dtype=np.int32),
            truncated=np.array([truncated], dtype=bool))
    return FeatureBatch(encoder_id=message.encoder_id, d_sae=message.d_sae,
                        events=(message.event,), **fields)


def assemble(messages: Sequence[_Decoded]) -> FeatureBatch:
    if not messages:
        raise CodecError("no messages to assemble")
    first = messages[0]
    for m in messages:
        if (m.encoder_id, m.d_sae) != (first.encoder_id, first.d_sae):
            raise CodecError(f"messages of two encoders in one batch: {m.encoder_id!r}")
    fields = {}
    for name in TEXT_FIELDS:
        rows = [m.rows[name] for m in messages]
        fields[name] = SparseCodes.from_arrays(
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    return FeatureBatch(
        encoder_id=first.encoder_id,
        d_sae=first.d_sae,
        events=tuple(m.event for m in messages),
        **fields,
    )
