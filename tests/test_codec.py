"""The features topic's wire format: exact round trips, the older format, and clear rejections."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saewatch.codec import (
    FORMAT_VERSION,
    CodecError,
    decode_message,
    decode_messages,
    decode_record,
    encode_messages,
)
from saewatch.models import InvalidRecord, Record, SourcePosition
from saewatch.state.testing import make_batch

POSITION = SourcePosition(topic="features", partition=0, offset=7)


def batch():
    rng = np.random.default_rng(3)
    rows = [sorted(rng.choice(4096, 1800, replace=False).tolist()), [], [4095, 0]]
    rows[2].sort()
    values = [rng.random(len(r)).astype(np.float16).tolist() for r in rows]
    return make_batch(rows, 4096, values=values, prompt_rows=[[1, 2], [3], []])


def test_round_trip_is_exact_for_dense_empty_and_edge_rows() -> None:
    original = batch()
    decoded = decode_messages([v for _, v in encode_messages(original)])
    for field in ("prompt", "response"):
        a, b = original.codes(field), decoded.codes(field)
        assert np.array_equal(a.indptr, b.indptr)
        assert np.array_equal(a.indices, b.indices) and b.indices.dtype == np.int32
        assert np.array_equal(a.values, b.values) and b.values.dtype == np.float16
        assert np.array_equal(a.n_tokens, b.n_tokens)
    assert decoded.events == original.events
    assert decoded.encoder_id == original.encoder_id and decoded.d_sae == 4096


def test_dense_rows_are_binary_not_json_numbers() -> None:
    _, value = encode_messages(batch())[0]
    body = json.loads(value)
    assert body["format"] == FORMAT_VERSION == 2
    assert isinstance(body["response"]["indices"], str)
    assert len(value) < 1800 * 6 * 4 / 3 + 2_000  # base64 of int32 + float16, plus the event


def test_format_1_messages_with_json_lists_are_still_read() -> None:
    _, value = encode_messages(batch())[2]
    body = json.loads(value)
    body["format"] = 1
    body["response"] |= {"indices": [0, 4095], "values": [0.5, 2.0]}
    decoded = decode_messages([json.dumps(body).encode()])
    ids, vals = decoded.response.row(0)
    assert ids.tolist() == [0, 4095] and vals.tolist() == [0.5, 2.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 3}, "format 3"),
        ({"response": {"indices": "not base64!", "values": "", "n_tokens": 1,
                       "truncated": False}}, "not base64"),
        ({"response": {"indices": "AAAA", "values": "", "n_tokens": 1, "truncated": False}},
         "whole number"),
        ({"response": {"indices": "AAAAAA==", "values": "", "n_tokens": 1, "truncated": False}},
         "differ in length"),
        ({"d_sae": 8}, "outside"),
        ({"response": {"indices": "/////w==", "values": "ADw=", "n_tokens": 1,  # id -1
                       "truncated": False}}, "outside"),
    ],
)
def test_malformed_messages_raise_a_codec_error_naming_the_problem(change, message) -> None:
    _, value = encode_messages(batch())[0]
    body = json.loads(value) | change
    with pytest.raises(CodecError, match=message):
        decode_message(json.dumps(body).encode())


def test_decode_record_routes_bad_and_oversize_messages_with_their_reason() -> None:
    _, value = encode_messages(batch())[0]
    good = decode_record(value, POSITION, 0, 1 << 20)
    assert isinstance(good, Record) and good.codes is not None and len(good.codes) == 1
    bad = decode_record(b'{"format": 2}', POSITION, 0, 1 << 20)
    assert isinstance(bad, InvalidRecord) and bad.reason == "schema"
    big = decode_record(value, POSITION, 0, 100)
    assert isinstance(big, InvalidRecord) and big.reason == "oversize" and big.raw == value
