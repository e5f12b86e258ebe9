"""Where a feature fires inside a text: the top-activating token window of a document.

The encoder hands the state, per text field of a batch, a :class:`TokenWindows`: the character
span of every token it encoded, and for some (document, feature) pairs the window of tokens
around the feature's peak with the feature's activation on each of them. The example store
turns the pairs it keeps into a compact :class:`PeakWindow` (the window's text and its marks,
character spans with activations), and the API and report pages show it as an
:class:`ExampleWindow`.

>>> tw = TokenWindows.from_docs(
...     [[(0, 3), (4, 9), (10, 12), (13, 18)]], [[(5, 1, [2.5, 0.0, 0.5])]])
>>> w = tw.window(0, 5, "The quick is great")
>>> w.text, w.offset, [(int(m["start"]), int(m["end"]), float(m["act"])) for m in w.marks]
('quick is great', 4, [(0, 5, 2.5), (9, 14, 0.5)])
>>> w.to_model().highlights[0].model_dump()
{'start': 0, 'end': 5, 'activation': 2.5}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# One mark of a stored window: a character span of its text and the feature's activation there.
MARK_DTYPE = np.dtype([("start", "<i4"), ("end", "<i4"), ("act", "<f4")])


class Highlight(BaseModel):
    """A marked token: a character span of the window's text and the feature's activation."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0, description="First character of the token in the window's text.")
    end: int = Field(ge=0, description="One past its last character.")
    activation: float = Field(description="The feature's activation on this token.")


class ExampleWindow(BaseModel):
    """The top-activating window of an example: a piece of the event's text, tokens marked."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The window's text: the tokens around the feature's peak.")
    offset: int = Field(ge=0, description="Where the window starts in the event's text.")
    highlights: tuple[Highlight, ...] = Field(
        default=(), description="Tokens where the feature fires, in text order.")


@dataclass(frozen=True, slots=True)
class PeakWindow:
    """The compact form the example store keeps: window text, offset and marks (``MARK_DTYPE``)."""

    text: str
    offset: int
    marks: np.ndarray

    def to_model(self) -> ExampleWindow:
        return ExampleWindow(text=self.text, offset=self.offset, highlights=tuple(
            Highlight(start=int(m["start"]), end=int(m["end"]), activation=round(float(m["act"]), 4))
            for m in self.marks))


class TokenWindows(BaseModel):
    """Token spans and peak windows of one text field over a batch (rows as in the codes).

    Document ``d``'s tokens are ``token_spans[token_indptr[d]:token_indptr[d+1]]`` (character
    start, end in its text, the text's own tokens in model order); its windows are the pairs
    ``pair_indptr[d]:pair_indptr[d+1]``: ``features`` (ascending), ``first`` (the window's
    first token, an index into the document's tokens) and ``acts`` (the feature's activation
    on each of the window's tokens, 0 past the document's end).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    token_indptr: np.ndarray  # [n_docs + 1] int64
    token_spans: np.ndarray  # [n_tokens, 2] int32
    pair_indptr: np.ndarray  # [n_docs + 1] int64
    features: np.ndarray  # [n_pairs] int32
    first: np.ndarray  # [n_pairs] int32
    acts: np.ndarray  # [n_pairs, window] float16

    @model_validator(mode="after")
    def _check_shapes(self) -> TokenWindows:
        if len(self.token_indptr) != len(self.pair_indptr) or len(self.token_indptr) < 1:
            raise ValueError("token_indptr and pair_indptr need one entry per document, plus one")
        if self.token_indptr[-1] != len(self.token_spans) or (
                self.pair_indptr[-1] != len(self.features)):
            raise ValueError("the indptr arrays must end at the number of tokens and pairs")
        if not (len(self.features) == len(self.first) == len(self.acts)):
            raise ValueError("features, first and acts need one entry per pair")
        return self

    def __len__(self) -> int:
        return len(self.token_indptr) - 1

    @classmethod
    def empty(cls, n_docs: int, window: int = 1) -> TokenWindows:
        """No tokens and no windows for ``n_docs`` documents."""
        zeros = np.zeros(n_docs + 1, dtype=np.int64)
        return cls(token_indptr=zeros, token_spans=np.zeros((0, 2), np.int32), pair_indptr=zeros,
                   features=np.zeros(0, np.int32), first=np.zeros(0, np.int32),
                   acts=np.zeros((0, window), np.float16))

    @classmethod
    def from_docs(cls, spans: Sequence[Sequence[tuple[int, int]]],
                  pairs: Sequence[Sequence[tuple[int, int, Sequence[float]]]]) -> TokenWindows:
        """From per-document token spans and ``(feature, first token, activations)`` pairs."""
        window = max((len(a) for doc in pairs for _, _, a in doc), default=1)
        flat = sorted(((d, f, s, a) for d, doc in enumerate(pairs) for f, s, a in doc),
                      key=lambda p: (p[0], p[1]))
        acts = np.zeros((len(flat), window), np.float16)
        for i, (*_, a) in enumerate(flat):
            acts[i, : len(a)] = a
        return cls(
            token_indptr=indptr_of([len(s) for s in spans]),
            token_spans=np.array([t for s in spans for t in s], np.int32).reshape(-1, 2),
            pair_indptr=indptr_of([len(p) for p in pairs]),
            features=np.array([p[1] for p in flat], np.int32),
            first=np.array([p[2] for p in flat], np.int32), acts=acts)

    def take(self, rows: Sequence[int] | np.ndarray) -> TokenWindows:
        """The given documents, in the given order."""
        picked = [int(i) for i in rows]
        tok = [np.arange(self.token_indptr[i], self.token_indptr[i + 1]) for i in picked]
        pair = [np.arange(self.pair_indptr[i], self.pair_indptr[i + 1]) for i in picked]
        t = np.concatenate(tok) if tok else np.zeros(0, np.int64)
        p = np.concatenate(pair) if pair else np.zeros(0, np.int64)
        return TokenWindows(token_indptr=indptr_of([len(x) for x in tok]),
                            token_spans=self.token_spans[t], pair_indptr=indptr_of([len(x) for x in pair]),
                            features=self.features[p], first=self.first[p], acts=self.acts[p])

    @classmethod
    def concat(cls, parts: Sequence[TokenWindows]) -> TokenWindows:
        """Documents of ``parts`` one after the other (windows padded to the widest)."""
        if not parts:
            return cls.empty(0)
        width = max(p.acts.shape[1] for p in parts)
        return cls(
            token_indptr=indptr_of(np.concatenate([np.diff(p.token_indptr) for p in parts])),
            token_spans=np.concatenate([p.token_spans for p in parts]).astype(np.int32),
            pair_indptr=indptr_of(np.concatenate([np.diff(p.pair_indptr) for p in parts])),
            features=np.concatenate([p.features for p in parts]).astype(np.int32),
            first=np.concatenate([p.first for p in parts]).astype(np.int32),
            acts=np.concatenate([np.pad(p.acts, ((0, 0), (0, width - p.acts.shape[1])))
                                 for p in parts]).astype(np.float16))

    def window(self, doc: int, feature: int, text: str) -> PeakWindow | None:
        """The window of ``feature`` in document ``doc`` (whose text is ``text``), if kept.

        The window holds the run of tokens around the peak that are contiguous in the text (a
        text cut to its head and tail is never bridged); overlapping spans (a character split
        over two byte-level tokens) are merged, keeping the larger activation.
        """
        lo, hi = int(self.pair_indptr[doc]), int(self.pair_indptr[doc + 1])
        at = lo + int(np.searchsorted(self.features[lo:hi], feature))
        if at >= hi or int(self.features[at]) != feature:
            return None
        spans = self.token_spans[self.token_indptr[doc] : self.token_indptr[doc + 1]]
        first = int(self.first[at])
        acts = self.acts[at, : max(0, min(self.acts.shape[1], len(spans) - first))].astype(np.float32)
        if not len(acts) or float(acts.max()) <= 0:
            return None
        win = spans[first : first + len(acts)]
        a, b = _contiguous_run(win, int(np.argmax(acts)), text)
        return _marked(text, win[a:b], acts[a:b])


def _contiguous_run(spans: np.ndarray, peak: int, text: str) -> tuple[int, int]:
    """The tokens around ``peak`` with nothing but whitespace between neighbours."""
    def joined(i: int) -> bool:  # token i and i + 1 are neighbours in the text
        gap = text[int(spans[i][1]) : int(spans[i + 1][0])]
        return int(spans[i + 1][0]) >= int(spans[i][0]) and not gap.strip()
    a = peak
    while a > 0 and joined(a - 1):
        a -= 1
    b = peak + 1
    while b < len(spans) and joined(b - 1):
        b += 1
    return a, b


def _marked(text: str, spans: np.ndarray, acts: np.ndarray) -> PeakWindow:
    start, end = int(spans[0][0]), max(int(spans[-1][1]), int(spans[0][0]))
    marks: list[tuple[int, int, float]] = []
    for (s, e), act in zip(spans.tolist(), acts.tolist(), strict=True):
        if act <= 0:
            continue
        if marks and s < marks[-1][1]:  # overlaps the previous mark: one mark, the larger value
            marks[-1] = (marks[-1][0], max(e, marks[-1][1]), max(act, marks[-1][2]))
            continue
        if e > s:
            marks.append((s, e, act))
    out = np.array([(s - start, e - start, act) for s, e, act in marks], dtype=MARK_DTYPE)
    out.flags.writeable = False
    return PeakWindow(text=text[start:end], offset=start, marks=out)


def indptr_of(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """CSR row pointers of rows of the given lengths: ``[0, l0, l0 + l1, ...]``."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=out[1:])
    return out


__all__ = ["MARK_DTYPE", "ExampleWindow", "Highlight", "PeakWindow", "TokenWindows", "indptr_of"]
