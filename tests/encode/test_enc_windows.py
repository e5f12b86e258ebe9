"""Peak windows (the highlighted examples): token spans from the real tokenizer, the peak and
window of a known text, and the windows of a real encoder against its own token-level codes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerBase

from saewatch.datasets import read_alpaca
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.text import TextTokenizer
from saewatch.encode.windows import PeakWindows
from saewatch.models import LLMEvent, TokenWindows

TEXT = "The cat sat on the mat. Then it slept."


@pytest.mark.parametrize(("budget", "tail"), [(256, 0), (24, 0), (24, 6), (256, 64)])
def test_spans_are_the_whole_texts_offsets_of_the_kept_tokens(
    tokenizer: PreTrainedTokenizerBase, budget: int, tail: int
) -> None:
    """Also on the head and tail shortcuts: the spans index the whole text, not a cut of it."""
    text = TextTokenizer(tokenizer, budget, use_chat_template=True, tail_tokens_per_text=tail)
    texts = [r.output for r in read_alpaca("gpt4_1106_preview_verbose")[:60]]
    texts += ["", "héllo 日本語 " * 400, "a" * 5000, " " * 3000 + "tail", TEXT]
    whole = tokenizer(texts, add_special_tokens=False, split_special_tokens=True,
                      return_offsets_mapping=True)
    for field in ("prompt", "response"):
        for doc, offsets in zip(text.tokenize(texts, field), whole["offset_mapping"], strict=True):
            n = len(offsets)
            kept = (list(range(n)) if n <= budget
                    else list(range(budget - tail)) + list(range(n - tail, n)))
            assert doc.spans == [tuple(offsets[i]) for i in kept]
            assert len(doc.spans) == doc.n_tokens


def test_the_window_of_a_known_text_marks_the_peak_token(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    doc = TextTokenizer(tokenizer, 256, use_chat_template=False).tokenize([TEXT], "response")[0]
    assert doc.spans is not None
    pieces = [TEXT[s:e] for s, e in doc.spans]
    mat, cat, slept = pieces.index(" mat"), pieces.index(" cat"), pieces.index(" slept")
    # Feature 3 fires on " cat" (0.5), " mat" (2.0, the peak) and " slept" (1.0); feature 1
    # only on the first token. Window of 4 tokens, 2 of them before the peak.
    fires = [(cat, 3, 0.5), (mat, 3, 2.0), (slept, 3, 1.0), (0, 1, 0.25)]
    pos, feat, val = (torch.tensor(c) for c in zip(*fires, strict=True))
    windows = PeakWindows(1, 8, threshold=0.0, presence=None, window=4, before=2)
    windows.add([0], torch.zeros(len(fires), dtype=torch.long), pos, feat, val.float(),
                torch.tensor([doc.n_tokens]))
    tw = windows.finish([doc.spans])
    assert tw.features.tolist() == [1, 3]
    w = tw.window(0, 3, TEXT)
    assert w is not None
    assert tw.first.tolist()[1] == mat - 2  # the window starts 2 tokens before the peak
    assert w.offset == doc.spans[mat - 2][0] and w.text == TEXT[w.offset : w.offset + len(w.text)]
    marks = [(int(m["start"]) + w.offset, int(m["end"]) + w.offset, float(m["act"]))
             for m in w.marks]
    start = TEXT.index(" mat")
    assert marks == [(start, start + 4, 2.0)]  # " cat" and " slept" are outside the window
    assert w.to_model().highlights[0].activation == 2.0
    first = tw.window(0, 1, TEXT)
    assert first is not None and first.offset == 0 and first.text.startswith("The")
    assert tw.window(0, 5, TEXT) is None


def test_a_window_never_bridges_a_head_and_tail_cut() -> None:
    text = "aaa bbb ccc ... many words ... xxx yyy"
    spans = [(0, 3), (3, 7), (7, 11), (30, 34), (34, 38)]  # head 3 tokens, then the tail's 2
    tw = TokenWindows.from_docs([spans], [[(2, 0, [0.0, 1.0, 0.5, 3.0, 0.0])]])
    w = tw.window(0, 2, text)
    assert w is not None and w.text == " xxx yyy" and w.offset == 30
    assert [(int(m["start"]), int(m["end"])) for m in w.marks] == [(0, 4)]


def test_overlapping_spans_of_one_character_give_one_mark() -> None:
    text = "ab日c"
    spans = [(0, 2), (2, 3), (2, 3), (3, 4)]  # 日 split over two byte-level tokens
    tw = TokenWindows.from_docs([spans], [[(0, 0, [0.0, 1.0, 2.0, 0.0])]])
    w = tw.window(0, 0, text)
    assert w is not None
    assert [(int(m["start"]), int(m["end"]), float(m["act"])) for m in w.marks] == [(2, 3, 2.0)]


def _events(texts: list[str]) -> list[LLMEvent]:
    return [LLMEvent(event_id=f"e{i}", timestamp=datetime(2026, 11, 20, tzinfo=UTC),
                     model_id="m", model_version="v1", prompt="Say something.", response=t)
            for i, t in enumerate(texts)]


@pytest.mark.parametrize("sanity_tokens", [0, 1_000_000])  # top-k path; dense path
def test_real_encoder_windows_match_its_token_level_codes(
    make_encoder: Callable[..., SAEEncoder], sanity_tokens: int
) -> None:
    encoder = make_encoder(sanity_tokens=sanity_tokens, max_tokens_per_text=48,
                           tail_tokens_per_text=8)
    texts = [r.output for r in read_alpaca("gpt4_1106_preview")[:6]] + ["Hi", ""]
    batch = encoder.encode(_events(texts))
    windows = batch.response_windows
    assert windows is not None and batch.prompt_windows is not None and len(windows) == len(texts)
    docs = encoder.reader.tokenize(texts, "response")
    dense = {}  # the reference: dense token-level SAE activations of each document
    for tb in encoder.reader.iter_batches(docs):
        with torch.inference_mode():
            feats = encoder.sae.encode(tb.acts).numpy()
        for row, d in enumerate(tb.docs):
            dense[d] = feats[(tb.doc_index == row).numpy()]
    checked = 0
    for d, text in enumerate(texts):
        ids, values = batch.response.row(d)
        for j, pooled in zip(ids.tolist(), values.astype(np.float32).tolist(), strict=True):
            w = windows.window(d, j, text)
            assert w is not None, (d, j)
            assert text[w.offset : w.offset + len(w.text)] == w.text
            col = dense[d][:, j]
            peak = int(np.argmax(col))
            spans = docs[d].spans
            assert spans is not None
            # The peak token is marked with the pooled value (acts are float16, so a near tie
            # may show two marks of one value: the peak is one of them).
            at_peak = [m for m in w.marks if int(m["start"]) + w.offset <= spans[peak][0]
                       and spans[peak][1] <= int(m["end"]) + w.offset]
            assert len(at_peak) == 1
            assert float(at_peak[0]["act"]) == pytest.approx(pooled, rel=2e-3)
            assert max(float(m["act"]) for m in w.marks) == pytest.approx(pooled, rel=2e-3)
            assert all(0 <= m["start"] < m["end"] <= len(w.text) for m in w.marks)
            checked += 1
    assert checked > 100
    assert windows.window(len(texts) - 1, 0, "") is None  # the empty text has none


def test_encoder_without_windows_carries_none(make_encoder: Callable[..., SAEEncoder]) -> None:
    encoder = make_encoder(highlight_windows=False)  # encode.highlight_windows: false
    assert not encoder.windows and make_encoder().windows
    batch = encoder.encode(_events(["Hello there."]))
    assert batch.response_windows is None and batch.prompt_windows is None
    assert len(batch.response.n_tokens) == 1 and batch.response.n_tokens[0] > 0


def test_presence_thresholds_bound_the_windows_and_none_left_is_fine() -> None:
    """Only pairs present as in the codes get a window, at most ``max_per_doc`` per document
    (the strongest over their threshold); a batch where none is present adds nothing."""
    rows = torch.tensor([0, 0, 0, 1])
    pos, feat = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 0])
    val = torch.tensor([1.0, 3.0, 2.5, 0.5])
    presence = np.array([0.6, 1.0, 2.0, 9.0], np.float32)
    windows = PeakWindows(2, 4, threshold=0.0, presence=presence, window=4, max_per_doc=1)
    windows.add([0, 1], rows, pos, feat, val, torch.tensor([3, 1]))
    windows.add([0, 1], rows, pos, feat, val * 0, torch.tensor([3, 1]))  # nothing present
    tw = windows.finish([[(0, 1), (1, 2), (2, 3)], [(0, 1)]])
    # doc 0: 1.0/0.6, 3.0/1.0 and 2.5/2.0 are present, 3.0/1.0 is the strongest; doc 1: 0.5 < 0.6
    assert tw.pair_indptr.tolist() == [0, 1, 1] and tw.features.tolist() == [1]
