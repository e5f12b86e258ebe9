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

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saewatch.models import TextField

logger = logging.getLogger(__name__)

_SENTINEL = "SAEWATCHSENTINELTEXT"
_ROLE: dict[TextField, str] = {"prompt": "user", "response": "assistant"}


@dataclass(frozen=True, slots=True)
class TokenizedText:
    """Token ids of one text in context; its own tokens are ``ids[start:]``."""

    ids: list[int]
    start: int
    truncated: bool

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
    """

    def __init__(self, tokenizer: Any, max_tokens_per_text: int, use_chat_template: bool) -> None:
        self.tokenizer = tokenizer
        self.max_tokens_per_text = max_tokens_per_text
        self.use_chat_template = use_chat_template
        self._prefix: dict[TextField, list[int]] = {
            field: self._prefix_ids(field) for field in ("prompt", "response")
        }

    def prefix(self, field: TextField) -> list[int]:
        """Context tokens put before every text of ``field`` (masked out of pooling)."""
        return list(self._prefix[field])

    def tokenize(self, texts: Sequence[str], field: TextField) -> list[TokenizedText]:
        """Tokenize ``texts`` as ``field`` turns, truncated to the token budget."""
        if not texts:
            return []
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, split_special_tokens=True
        ).input_ids
        prefix = self._prefix[field]
        out = []
        for ids in encoded:
            truncated = len(ids) > self.max_tokens_per_text
            body = list(ids[: self.max_tokens_per_text])
            out.append(TokenizedText(ids=prefix + body, start=len(prefix), truncated=truncated))
        return out

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
