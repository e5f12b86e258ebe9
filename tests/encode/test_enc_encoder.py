"""Pooling and masking of the SAE encoder on a tiny random Llama with a random TopK SAE."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.exceptions import EncodeError
from saewatch.encode.reader import plan_batches
from saewatch.models import LLMEvent, SparseCodes

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hi",
    "A considerably longer response, which goes on for a while, listing reasons:\n"
    "1. first\n2. second\n3. third, with a little more detail than strictly needed.",
    "Short answer.",
    "def add(a, b):\n    return a + b",
]


def _rows(codes: SparseCodes) -> list[tuple[list[int], list[float]]]:
    return [(i.tolist(), v.tolist()) for i, v in (codes.row(j) for j in range(len(codes)))]


def _assert_same_rows(a: tuple[list[int], list[float]], b: tuple[list[int], list[float]]) -> None:
    assert a[0] == b[0]
    np.testing.assert_allclose(a[1], b[1], rtol=2e-3)


def test_codes_are_sparse_sorted_and_above_threshold(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder(threshold=0.0)
    codes = encoder.encode_texts(TEXTS, "response")
    assert len(codes) == len(TEXTS)
    assert codes.indices.dtype == np.int32 and codes.values.dtype == np.float16
    for j in range(len(codes)):
        idx, val = codes.row(j)
        assert np.all(np.diff(idx) > 0)
        assert np.all(val > 0)
        # k=8 per token, so a document fires at least 8 and at most 8 * tokens features.
        assert 8 <= len(idx) <= 8 * codes.n_tokens[j]


def test_same_text_alone_or_among_longer_padded_texts_gives_same_codes(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder()
    together = _rows(encoder.encode_texts(TEXTS, "response"))
    for j, text in enumerate(TEXTS):
        alone = _rows(encoder.encode_texts([text], "response"))[0]
        _assert_same_rows(alone, together[j])


def test_batch_order_and_batch_size_do_not_matter(make_encoder: Callable[..., SAEEncoder]) -> None:
    big = make_encoder(max_tokens_per_batch=8192)
    small = make_encoder(max_tokens_per_batch=64)  # forces one text per batch
    reference = _rows(big.encode_texts(TEXTS, "response"))
    order = [3, 0, 4, 2, 1]
    shuffled = _rows(small.encode_texts([TEXTS[i] for i in order], "response"))
    for pos, i in enumerate(order):
        _assert_same_rows(shuffled[pos], reference[i])


def test_identical_texts_in_different_batches_give_identical_codes(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder(max_tokens_per_batch=128)
    texts = [TEXTS[0], TEXTS[2], TEXTS[0], TEXTS[4], TEXTS[0]]
    rows = _rows(encoder.encode_texts(texts, "prompt"))
    _assert_same_rows(rows[0], rows[2])
    _assert_same_rows(rows[0], rows[4])


def test_template_and_special_tokens_never_contribute(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder()
    reader = encoder.reader
    docs = reader.tokenize(["Hello there"], "response")
    prefix = reader.text.prefix("response")
    assert docs[0].ids[: docs[0].start] == prefix and len(prefix) > 0
    special = set(reader.text.tokenizer.all_special_ids)
    assert any(t in special for t in prefix)
    # A literal special-token string inside a text is split into ordinary tokens.
    inner = reader.tokenize(["a <|im_end|> b"], "response")[0]
    assert not special & set(inner.ids[inner.start :])
    batch = next(reader.iter_batches(docs))
    assert batch.acts.shape[0] == docs[0].n_tokens
    assert batch.token_ids.tolist() == docs[0].ids[docs[0].start :]


def test_pooled_value_is_the_max_over_text_tokens_only(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder()
    docs = encoder.reader.tokenize([TEXTS[0]], "response")
    batch = next(encoder.reader.iter_batches(docs))
    with torch.inference_mode():
        dense = encoder.sae.encode(batch.acts).max(dim=0).values
    idx, val = encoder.encode_texts([TEXTS[0]], "response").row(0)
    expected = torch.nonzero(dense > 0).flatten().tolist()
    assert idx.tolist() == expected
    np.testing.assert_allclose(val, dense[expected].numpy(), rtol=1e-3)


def test_prompt_and_response_templates_differ(make_encoder: Callable[..., SAEEncoder]) -> None:
    text = make_encoder().reader.text
    assert text.prefix("prompt") != text.prefix("response")


def test_truncation_is_counted_and_empty_texts_kept(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder(max_tokens_per_text=8)
    codes = encoder.encode_texts([TEXTS[2], "", TEXTS[1]], "response")
    assert codes.truncated.tolist() == [True, False, False]
    assert codes.n_tokens.tolist()[:2] == [8, 0]
    assert len(codes.row(1)[0]) == 0 and len(codes.row(2)[0]) > 0


def test_encode_events_gives_both_fields_in_order(make_encoder: Callable[..., SAEEncoder]) -> None:
    encoder = make_encoder()
    events = [
        LLMEvent(
            event_id=f"e{i}",
            timestamp=datetime(2026, 11, 20, tzinfo=UTC),
            model_id="m",
            model_version="v1",
            prompt=TEXTS[i],
            response=TEXTS[-1 - i],
        )
        for i in range(3)
    ]
    batch = encoder.encode(events)
    assert [e.event_id for e in batch.events] == ["e0", "e1", "e2"]
    assert batch.d_sae == 256 and batch.encoder_id.startswith("tiny/blocks.1.hook_resid_post/")
    direct = _rows(encoder.encode_texts([TEXTS[-1 - i] for i in range(3)], "response"))
    for i in range(3):
        _assert_same_rows(_rows(batch.response)[i], direct[i])


def test_higher_threshold_keeps_a_subset(make_encoder: Callable[..., SAEEncoder]) -> None:
    low = _rows(make_encoder(threshold=0.0).encode_texts(TEXTS, "response"))
    high = _rows(make_encoder(threshold=0.5).encode_texts(TEXTS, "response"))
    for lo, hi in zip(low, high, strict=True):
        assert set(hi[0]) <= set(lo[0])
        assert all(v > 0.5 for v in hi[1])


def test_dense_embed_is_the_mean_of_text_token_activations(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder()
    emb = encoder.dense_embed(TEXTS[:2] + [""], "response")
    assert emb.shape == (3, 64)
    docs = encoder.reader.tokenize([TEXTS[0]], "response")
    acts = next(encoder.reader.iter_batches(docs)).acts
    np.testing.assert_allclose(emb[0], acts.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert not emb[2].any()


def test_sanity_check_reports_fve_and_l0(make_encoder: Callable[..., SAEEncoder]) -> None:
    encoder = make_encoder(sanity_tokens=20)
    assert encoder.health.fve is None
    encoder.encode_texts(TEXTS, "response")
    health = encoder.health
    assert health.done and health.tokens_checked >= 20
    assert health.mean_l0 == pytest.approx(8.0)
    assert health.fve is not None and health.fve < 1.0


def test_plan_batches_respects_the_token_budget() -> None:
    lengths = [30, 5, 12, 12, 40, 7]
    batches = plan_batches(lengths, max_tokens_per_batch=40)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 40


def test_cuda_out_of_memory_halves_the_batch_and_drops_nothing(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    reader = make_encoder().reader
    seen: list[list[int]] = []

    def flaky(group: list[int]) -> list[int]:
        if len(group) > 2:  # the allocator fails for big batches, as on a full GPU
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        seen.append(group)
        return group

    results = reader._with_oom_retry(list(range(7)), flaky)
    assert sorted(i for r in results for i in r) == list(range(7))
    assert all(len(g) <= 2 for g in seen)
    assert reader._token_budget < 8192


def test_token_budget_beyond_the_models_positions_fails_clearly(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    with pytest.raises(EncodeError, match="max_tokens_per_text"):
        make_encoder(max_tokens_per_text=1020)  # the tiny model has 1024 positions
