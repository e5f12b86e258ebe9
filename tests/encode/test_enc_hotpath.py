"""The vectorised hot path gives exactly the codes of the straightforward per-document one.

``reference_codes`` below is the encoder as it was before the hot path was vectorised (issue
17): one tokenizer call per field, padded batches written row by row, a boolean text mask, the
SAE's dense output max-pooled per batch and one CSR row per document in a Python loop. The
encoder must reproduce it bit for bit in fp32 (same feature ids, same float16 values) on real
AlpacaEval prompts and responses from ``tests/data``, with the same batch plan.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformers import PreTrainedTokenizerBase

from saewatch.config import EncodeSettings
from saewatch.datasets import alpaca_events, read_alpaca
from saewatch.encode import encoder as encoder_module
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.model import run_to_hook
from saewatch.encode.pooling import MaxPool
from saewatch.encode.reader import plan_batches
from saewatch.models import LLMEvent, SparseCodes, TextField
from tests.support.encode import TINY_HIDDEN, make_tiny_llama, make_topk_sae

HOOK = "blocks.1.hook_resid_post"


def reference_codes(encoder: SAEEncoder, texts: Sequence[str], field: TextField) -> SparseCodes:
    """The pre-vectorisation encoder, kept verbatim in spirit: per-document Python loops."""
    reader, sae = encoder.reader, encoder.sae
    tok, budget = reader.text.tokenizer, reader.text.max_tokens_per_text
    prefix = reader.text.prefix(field)
    encoded = tok(list(texts), add_special_tokens=False, split_special_tokens=True).input_ids
    tail = reader.text.tail_tokens_per_text
    docs = [(prefix + (list(ids) if len(ids) <= budget else
                       list(ids[: budget - tail]) + (list(ids[-tail:]) if tail else [])),
             len(ids) > budget) for ids in encoded]
    rows: list[tuple[np.ndarray, np.ndarray]] = [
        (np.zeros(0, np.int32), np.zeros(0, np.float16))] * len(docs)
    wanted = [i for i, (ids, _) in enumerate(docs) if len(ids) > len(prefix)]
    for plan in plan_batches([len(docs[i][0]) for i in wanted], reader._token_budget):
        group = [wanted[j] for j in plan]
        width = max(len(docs[i][0]) for i in group)
        input_ids = torch.full((len(group), width), reader._pad_id, dtype=torch.long)
        attention = torch.zeros((len(group), width), dtype=torch.long)
        text_mask = torch.zeros((len(group), width), dtype=torch.bool)
        for row, i in enumerate(group):
            ids = docs[i][0]
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
            text_mask[row, len(prefix) : len(ids)] = True
        with torch.inference_mode():
            acts = run_to_hook(reader._base, reader._module, input_ids, attention)[text_mask].float()
            feats = sae.encode(acts)
            index = text_mask.nonzero(as_tuple=True)[0].unsqueeze(1).expand_as(feats)
            pooled = torch.zeros(len(group), encoder.d_sae, dtype=feats.dtype)
            pooled.scatter_reduce_(0, index, feats, "amax", include_self=True)
            r, c = (pooled > encoder.threshold).nonzero(as_tuple=True)
            values = pooled[r, c].clamp(max=65504.0).float().numpy().astype(np.float16)
        for d, doc in enumerate(group):
            mine = (r == d).numpy()
            rows[doc] = (c.numpy()[mine].astype(np.int32), values[mine])
    codes = SparseCodes.from_arrays([x[0] for x in rows], [x[1] for x in rows],
                                    [len(ids) - len(prefix) for ids, _ in docs],
                                    [t for _, t in docs])
    # Presence thresholds (on by default for the shipped SAE) filter the pooled codes last.
    return codes if encoder.presence is None else encoder.presence.apply(codes)


def assert_identical(new: SparseCodes, ref: SparseCodes) -> None:
    for name in ("indptr", "indices", "values", "n_tokens", "truncated"):
        a, b = getattr(new, name), getattr(ref, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert new.values.tobytes() == ref.values.tobytes()  # bit for bit, not just ==


def real_events(n: int) -> list[LLMEvent]:
    """AlpacaEval prompts and responses of two models (long and short), with one empty text."""
    events = alpaca_events("gpt4_1106_preview", limit=n // 2)
    events += alpaca_events("gpt4_1106_preview_concise", limit=n - n // 2)
    events[1] = events[1].model_copy(update={"response": ""})
    return events


@pytest.fixture
def build(tokenizer: PreTrainedTokenizerBase) -> Callable[..., SAEEncoder]:
    def make(sae: object | None = None, **settings: object) -> SAEEncoder:
        from saewatch.encode.sae import LoadedSae, SaeExpectations

        loaded = LoadedSae(
            sae=sae if sae is not None else make_topk_sae(TINY_HIDDEN, 512, 16, HOOK),  # type: ignore[arg-type]
            hook_name=HOOK, sae_id="random", directory=None,
            expectations=SaeExpectations(0.0, None, "test"),
        )
        values = {"precision": "fp32", "sanity_tokens": 0, "device": "cpu"} | settings
        return SAEEncoder.from_parts(make_tiny_llama(len(tokenizer)), tokenizer, loaded,
                                     EncodeSettings(**values), "tiny")  # type: ignore[arg-type]

    return make


@pytest.mark.parametrize("settings", [
    {},  # default budgets: 256 tokens per text, a few large batches
    {"max_tokens_per_batch": 256, "max_tokens_per_text": 64},  # many batches, truncation
    {"threshold": 0.3},
    {"sanity_tokens": 200},  # the first batches take the dense path of the sanity check
])
def test_encode_matches_the_per_document_reference(
    build: Callable[..., SAEEncoder], settings: dict[str, object]
) -> None:
    encoder = build(**settings)
    events = real_events(24)
    batch = encoder.encode(events)
    for field in ("prompt", "response"):
        ref = reference_codes(encoder, [e.text(field) for e in events], field)
        assert_identical(batch.codes(field), ref)
    assert len(batch.response.row(1)[0]) == 0 and batch.response.n_tokens[1] == 0


def test_dense_sae_path_and_buffer_flushes_match_the_reference(
    build: Callable[..., SAEEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(1)
    cfg = StandardSAEConfig(d_in=TINY_HIDDEN, d_sae=128, metadata=SAEMetadata(hook_name=HOOK))
    encoder = build(sae=StandardSAE(cfg).eval(), max_tokens_per_batch=512)
    texts = [r.output for r in read_alpaca("gpt4_1106_preview")[:20]]
    ref = reference_codes(encoder, texts, "response")
    assert_identical(encoder.encode_texts(texts, "response"), ref)
    # A buffer of 3 documents flushes to the host many times; the rows still come out in order.
    monkeypatch.setattr(encoder_module, "MaxPool", functools.partial(MaxPool, max_elements=3 * 128))
    assert_identical(encoder.encode_texts(texts, "response"), ref)


def test_encode_stream_gives_the_codes_of_encode(build: Callable[..., SAEEncoder]) -> None:
    encoder = build()
    events = real_events(18)
    chunks = [events[i : i + 5] for i in range(0, len(events), 5)]
    streamed = list(encoder.encode_stream(iter(chunks)))
    assert [len(b) for b in streamed] == [5, 5, 5, 3]
    for got, chunk in zip(streamed, chunks, strict=True):
        want = encoder.encode(chunk)
        assert got.events == want.events
        assert_identical(got.prompt, want.prompt)
        assert_identical(got.response, want.response)
    assert list(encoder.encode_stream([])) == []


def test_pool_of_one_batch_keeps_its_row_api(build: Callable[..., SAEEncoder]) -> None:
    encoder = build()
    texts = [r.output for r in read_alpaca("gpt4_1106_preview")[:6]]
    docs = encoder.reader.tokenize(texts, "response")
    ref = reference_codes(encoder, texts, "response")
    for batch in encoder.reader.iter_batches(docs):
        ids, rows = encoder._pool(batch)
        for doc, (idx, val) in zip(ids, rows, strict=True):
            np.testing.assert_array_equal(idx, ref.row(doc)[0])
            assert val.tobytes() == ref.row(doc)[1].tobytes()


@pytest.mark.slow
def test_default_model_codes_match_the_reference() -> None:
    """The real SmolLM2 + shipped TopK SAE (about 10-20 s on 2 cores, most of it two encodes)."""
    encoder = SAEEncoder.from_settings(EncodeSettings(device="cpu", precision="fp32",
                                                      sanity_tokens=0))
    texts = [r.output for r in read_alpaca("gpt4_1106_preview")[:8]]
    assert_identical(encoder.encode_texts(texts, "response"),
                     reference_codes(encoder, texts, "response"))


def _adversarial_texts() -> list[str]:
    """Texts whose cut lands on contractions, digit runs, whitespace runs, emoji and CJK."""
    pieces = ["it's", "we're", "they'll", " 12345678", "   \n\n   ", "\t\t", "!!!???", "😀🎉",
              "漢字かな交じり文", "naïve café", "<|im_end|>", "x" * 40, "\r\n", "'re", "....."]
    texts = []
    for i in range(200):
        words = [pieces[(i * 7 + j * 3) % len(pieces)] for j in range(12 + i % 17)]
        texts.append(" ".join(words) + " end" * (i % 5))
    return texts


@pytest.mark.parametrize(("budget", "tail"), [(8, 0), (24, 0), (256, 0), (24, 6), (256, 64)])
def test_prefix_tokenization_equals_whole_text_tokenization(
    tokenizer: PreTrainedTokenizerBase, budget: int, tail: int
) -> None:
    """The head (and tail) shortcuts give the whole text's tokens: first ``budget - tail``
    and last ``tail`` of a longer text."""
    from saewatch.encode.text import TextTokenizer, splits_locally

    assert splits_locally(tokenizer)  # the default tokenizer takes the prefix shortcut
    text = TextTokenizer(tokenizer, budget, use_chat_template=True, tail_tokens_per_text=tail)
    texts = [r.output for r in read_alpaca("gpt4_1106_preview_verbose")[:300]]
    texts += [r.instruction for r in read_alpaca("gpt4_1106_preview")[:100]]
    texts += _adversarial_texts() + ["", " ", "a" * 5000, " " * 3000 + "tail"]
    whole = tokenizer(texts, add_special_tokens=False, split_special_tokens=True).input_ids
    for field in ("prompt", "response"):
        got = text.tokenize(texts, field)
        for doc, ids in zip(got, whole, strict=True):
            kept = ids if len(ids) <= budget else ids[: budget - tail] + ids[len(ids) - tail:]
            assert doc.ids[doc.start :] == kept
            assert doc.truncated == (len(ids) > budget)
        if tail:  # the endings are there: the last token of every cut text is its own last
            cut = [(d, ids) for d, ids in zip(got, whole, strict=True) if d.truncated]
            assert cut and all(d.ids[-1] == ids[-1] for d, ids in cut)


def test_replayed_forward_gives_the_real_codes_and_times_every_stage(
    build: Callable[..., SAEEncoder],
) -> None:
    from benchmarks.perf.encoder_overhead import ReplayForward, by_stage, check_same

    encoder = build(max_tokens_per_batch=512)
    polls = [real_events(10)[i : i + 5] for i in (0, 5)]
    replay = ReplayForward(encoder.reader)
    encoder.reader.forward_fn = replay.record
    real = [encoder.encode(p) for p in polls]
    encoder.reader.forward_fn = replay.replay
    stages = by_stage(encoder, lambda: check_same(real, [encoder.encode(p) for p in polls]))
    assert set(stages) == {"tokenize", "pad", "forward", "mask", "sae", "pool", "assemble"}
    assert all(s >= 0 for s in stages.values())


def test_begin_with_look_ahead_tokenizes_in_the_worker_and_gives_the_codes_of_encode(
    build: Callable[..., SAEEncoder],
) -> None:
    encoder = build()
    events = real_events(7)
    plain = encoder.begin(events).result()  # look-ahead off by default on CPU: encode itself
    assert encoder._tokenizer_thread is None and not encoder.looks_ahead
    encoder._look_ahead = True
    first, second = encoder.begin(events[:4]), encoder.begin(events[4:])
    assert encoder._tokenizer_thread is not None and encoder.looks_ahead
    # finished out of order: each pending batch keeps its own events and tokens
    got_second, got_first = second.result(), first.result()
    assert got_first.events == tuple(events[:4]) and got_second.events == tuple(events[4:])
    joined = type(plain).concat([got_first, got_second])
    assert_identical(joined.prompt, plain.prompt)
    assert_identical(joined.response, plain.response)
    encoder.close()
    encoder.close()  # idempotent
    assert encoder._tokenizer_thread is None
