"""Text to token ids the way the model reads it, with the span of the text's own tokens.

A response is rendered as the assistant turn of the tokenizer's chat template, a prompt as the
user turn. Only the text's own tokens are pooled later: template, BOS and padding tokens (whose
activations are huge outliers) are outside the span. Text is tokenized with
``split_special_tokens=True`` so a literal ``<|im_end|>`` inside a response cannot end its turn.
The template's closing tokens are never appended: in a causal model they cannot change the
activations of the text before them, so computing them would be wasted work.

>>> from types import SimpleNamespace
>>> class Tok:  # a whitespace "tokenizer" standing in for a real one
...     bos_token_id, chat_template = 1, None
...     def __call__(self, texts, **kw):
...         return SimpleNamespace(input_ids=[[len(w) + 10 for w in t.split()] for t in texts])
>>> tt = TextTokenizer(Tok(), max_tokens_per_text=3, use_chat_template=True)
>>> [(t.ids, t.start, t.n_tokens, t.truncated) for t in tt.tokenize(["a bb", "a b c d"], "prompt")]
[([1, 11, 12], 1, 2, False), ([1, 11, 11, 11], 1, 3, True)]
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from saewatch.models import TextField

logger = logging.getLogger(__name__)

_T = TypeVar("_T")  # a token id, or its span

_SENTINEL = "SAEWATCHSENTINELTEXT"
# Texts longer than the budget times this are tokenized from that many characters only (a
# fast tokenizer's cost is linear in characters; responses run ~4.4 characters per token, code
# ~3.5, CJK ~1.5). A text denser than this falls back to whole-text tokenization.
CUT_CHARS_PER_TOKEN = 6
# The last pre-tokens of a cut text can differ from the whole text's: the one the cut splits,
# and up to two before it whose regex alternatives look ahead (a contraction such as "'re" cut
# to "'r" becomes "'" and "r"). Tokens of the pre-tokens before these are the whole text's.
UNSAFE_TAIL_WORDS = 3
# Pre-tokenizers whose split of a text's prefix equals the split of the whole text except near
# the end: GPT-2-style byte-level regexes (GPT-2, Llama 3, Qwen, SmolLM) and their parts.
_LOCAL_PRE_TOKENIZERS = frozenset({"ByteLevel", "Split", "Digits", "Punctuation",
                                   "Whitespace", "WhitespaceSplit"})
_ROLE: dict[TextField, str] = {"prompt": "user", "response": "assistant"}


Span = tuple[int, int]  # a token's characters in its text: start, end


@dataclass(frozen=True, slots=True)
class TokenizedText:
    """Token ids of one text in context; its own tokens are ``ids[start:]``.

    ``spans``: the character span of each of the text's own tokens in the text (from a fast
    tokenizer's offsets; ``None`` where the tokenizer gives none).
    """

    ids: list[int]
    start: int
    truncated: bool
    spans: list[Span] | None = None

    @property
    def n_tokens(self) -> int:
        """Tokens of the text itself (after truncation), the ones that are pooled."""
        return len(self.ids) - self.start


class TextTokenizer:
    """Tokenizes texts of one field with the template prefix and a token budget per text.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer.
    max_tokens_per_text
        Budget for the text's own tokens; longer texts keep their first tokens.
    use_chat_template
        Render the text as its chat turn when the tokenizer has a template.
    tail_tokens_per_text
        Of the budget of a longer text, how many tokens come from its end: the model reads the
        head, then the tail right after it, so endings (sign-offs, disclaimers, closing
        questions) are encoded too. 0 keeps the head only.
    """

    def __init__(self, tokenizer: Any, max_tokens_per_text: int, use_chat_template: bool,
                 tail_tokens_per_text: int = 0) -> None:
        if not 0 <= tail_tokens_per_text < max_tokens_per_text:
            raise ValueError(f"tail_tokens_per_text={tail_tokens_per_text} must be >= 0 and "
                             f"below max_tokens_per_text={max_tokens_per_text}")
        self.tokenizer = tokenizer
        self.max_tokens_per_text = max_tokens_per_text
        self.use_chat_template = use_chat_template
        self.tail_tokens_per_text = tail_tokens_per_text
        self._local = splits_locally(tokenizer)
        # Character offsets of the tokens (for the highlighted examples): fast tokenizers only.
        self._spans = bool(getattr(tokenizer, "is_fast", False))
        self._prefix: dict[TextField, list[int]] = {
            field: self._prefix_ids(field) for field in ("prompt", "response")
        }

    def prefix(self, field: TextField) -> list[int]:
        """Context tokens put before every text of ``field`` (masked out of pooling)."""
        return list(self._prefix[field])

    def tokenize(self, texts: Sequence[str], field: TextField) -> list[TokenizedText]:
        """Tokenize ``texts`` as ``field`` turns, truncated to the token budget."""
        return self.tokenize_fields([(texts, field)])[0]

    def tokenize_fields(
        self, groups: Sequence[tuple[Sequence[str], TextField]]
    ) -> list[list[TokenizedText]]:
        """Tokenize several fields' texts in one tokenizer call, one list per ``(texts, field)``.

        One batched call lets a fast tokenizer spread all texts of a poll over its threads; the
        ids of a text do not depend on the others in the call (no padding is asked for).
        """
        texts = [t for group, _ in groups for t in group]
        if not texts:
            return [[] for _ in groups]
        encoded = self._encode(texts)
        out: list[list[TokenizedText]] = []
        at = 0
        for group, field in groups:
            prefix = self._prefix[field]
            start = len(prefix)
            out.append([TokenizedText(ids=prefix + kept, start=start, truncated=cut, spans=spans)
                        for kept, spans, cut in encoded[at : at + len(group)]])
            at += len(group)
        return out

    def _keep(self, ids: Sequence[_T], tail: Sequence[_T] | None = None) -> tuple[list[_T], bool]:
        """The budget's tokens of a text: all of them, or its head and its last ``tail_tokens``.

        ``ids`` are the text's tokens (exact at least up to ``max_tokens_per_text + 1``);
        ``tail`` its exact last tokens when ``ids`` stops before the end of the text.
        """
        budget = self.max_tokens_per_text
        if tail is None and len(ids) <= budget:
            return list(ids), False
        n_tail = self.tail_tokens_per_text
        if n_tail == 0:
            return list(ids[:budget]), True
        last = list(ids if tail is None else tail)[-n_tail:]
        return list(ids[: budget - n_tail]) + last, True

    def _call(self, texts: list[str]) -> Any:
        return self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True,
                              return_attention_mask=False, return_token_type_ids=False,
                              **({"return_offsets_mapping": True} if self._spans else {}))

    def _kept(self, encoded: Any, i: int, shift: int = 0) -> tuple[list[int], list[Span] | None]:
        """Ids and spans (moved ``shift`` characters on) of text ``i`` of a tokenizer call."""
        spans = None
        if self._spans:
            offsets = encoded["offset_mapping"][i]
            spans = [(s + shift, e + shift) for s, e in offsets] if shift else list(offsets)
        return encoded.input_ids[i], spans

    def _keep_both(self, ids: tuple[list[int], list[Span] | None],
                   tail: tuple[list[int], list[Span] | None] | None = None,
                   ) -> tuple[list[int], list[Span] | None, bool]:
        """:meth:`_keep` of the ids and, in step, of their spans."""
        kept, cut = self._keep(ids[0], None if tail is None else tail[0])
        spans = None
        if ids[1] is not None and (tail is None or tail[1] is not None):
            spans = self._keep(ids[1], None if tail is None else tail[1])[0]
        return kept, spans, cut

    def _encode(self, texts: list[str]) -> list[tuple[list[int], list[Span] | None, bool]]:
        """The kept token ids of each text (:meth:`_keep`) and whether it was cut.

        Where the pre-tokenizer is local (:func:`splits_locally`), a text longer than
        ``max_tokens_per_text * CUT_CHARS_PER_TOKEN`` characters is tokenized from that prefix
        only: its tokens before the prefix's last ``UNSAFE_TAIL_WORDS`` pre-tokens are the full
        text's. Its tail, likewise, from its last ``tail_tokens_per_text * CUT_CHARS_PER_TOKEN``
        characters, dropping the tokens of the first ``UNSAFE_TAIL_WORDS`` pre-tokens (a
        regex split resynchronises within a pre-token or two of where it starts). If either
        part is too short to fill its share, the text is tokenized whole.
        """
        if not self._local:
            encoded = self._call(texts)
            return [self._keep_both(self._kept(encoded, i)) for i in range(len(texts))]
        cut = int(self.max_tokens_per_text * CUT_CHARS_PER_TOKEN)
        encoded = self._call([t[:cut] for t in texts])
        out = [self._keep_both(self._kept(encoded, i)) for i in range(len(texts))]
        long = [i for i, text in enumerate(texts) if len(text) > cut]
        heads: dict[int, tuple[list[int], list[Span] | None]] = {}
        for i in long:
            words = encoded.word_ids(i)
            last = next((w for w in reversed(words) if w is not None), None)
            safe = 0 if last is None else bisect_left(words, last - UNSAFE_TAIL_WORDS + 1,
                                                      key=lambda w: -1 if w is None else w)
            if safe > self.max_tokens_per_text:
                ids, spans = self._kept(encoded, i)
                heads[i] = ids[:safe], None if spans is None else spans[:safe]
        tails = self._tails([texts[i] for i in heads]) if self.tail_tokens_per_text else {}
        whole = [i for i in long if i not in heads]
        for j, i in enumerate(heads):
            if self.tail_tokens_per_text and j not in tails:
                whole.append(i)
            else:
                out[i] = self._keep_both(heads[i], tails.get(j))
        if whole:  # dense text (few characters per token): no shortcut
            full = self._call([texts[i] for i in whole])
            for j, i in enumerate(whole):
                out[i] = self._keep_both(self._kept(full, j))
        return out

    def _tails(self, texts: list[str]) -> dict[int, tuple[list[int], list[Span] | None]]:
        """Exact last tokens (at least ``tail_tokens_per_text``) of long texts, by position;
        a text whose cut end holds too few safe tokens is left out (tokenize it whole)."""
        cut = int(self.tail_tokens_per_text * CUT_CHARS_PER_TOKEN)
        if not texts:
            return {}
        encoded = self._call([t[-cut:] for t in texts])
        found: dict[int, tuple[list[int], list[Span] | None]] = {}
        for i, text in enumerate(texts):
            words = encoded.word_ids(i)
            first = next((w for w in words if w is not None), None)
            if first is None:
                continue
            safe = bisect_left(words, first + UNSAFE_TAIL_WORDS,
                               key=lambda w: -1 if w is None else w)
            ids, spans = self._kept(encoded, i, shift=max(0, len(text) - cut))
            if len(ids) - safe >= self.tail_tokens_per_text:
                found[i] = list(ids[safe:]), None if spans is None else spans[safe:]
        return found

    def _prefix_ids(self, field: TextField) -> list[int]:
        tok = self.tokenizer
        if self.use_chat_template and getattr(tok, "chat_template", None):
            rendered = tok.apply_chat_template(
                [{"role": _ROLE[field], "content": _SENTINEL}], tokenize=False
            )
            head, found, _ = str(rendered).partition(_SENTINEL)
            if found:
                # The template text holds special tokens as strings: let them parse.
                return list(tok([head], add_special_tokens=False).input_ids[0])
            logger.warning("chat template drops the message content; encoding without it")
        bos = getattr(tok, "bos_token_id", None)
        # A leading BOS (or any first token) is an attention sink with outlier activations;
        # it gives the text's first token a normal context and is masked out itself.
        return [int(bos)] if bos is not None else []


def splits_locally(tokenizer: Any) -> bool:
    """Whether a prefix of a text tokenizes like the whole text but for its last pre-tokens.

    True for a fast tokenizer with a BPE model, no normalizer and a pre-tokenizer built from
    regex splitting (byte-level, split, digits, punctuation, whitespace); False otherwise
    (SentencePiece-style replacements, unigram models, anything unknown), which keeps the
    whole-text tokenization.

    >>> splits_locally(object())
    False
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or backend is None:
        return False
    try:
        spec = json.loads(backend.to_str())
    except (TypeError, ValueError):
        return False
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return (spec.get("normalizer") is None
            and (spec.get("model") or {}).get("type") == "BPE"
            and bool(parts) and all(p.get("type") in _LOCAL_PRE_TOKENIZERS for p in parts))
