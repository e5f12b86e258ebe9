"""Sparse SAE codes: :class:`SparseCodes` (CSR rows per document) and :class:`FeatureBatch`
(the encoder's output for a batch of events)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from saewatch.models.events import (
    LLMEvent,
    TextField,
)
from saewatch.models.windows import TokenWindows


class SparseCodes(BaseModel):
    """Sparse SAE document codes of one text field over a batch, in CSR layout.

    Row ``i`` is ``indices[indptr[i]:indptr[i+1]]`` (feature ids, int32, ascending) with their
    max-pooled activations ``values`` (float16, all above the encoder's threshold).

    >>> c = SparseCodes.from_rows([[3, 7], []], [[1.5, 0.25], []], n_tokens=[12, 0])
    >>> c.row(0)[0].tolist(), len(c)
    ([3, 7], 2)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_tokens: np.ndarray  # tokens encoded per document, after truncation and masking
    truncated: np.ndarray  # True where the token budget cut the text

    @model_validator(mode="after")
    def _check_shapes(self) -> SparseCodes:
        n = len(self.indptr) - 1
        if n < 0 or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must start at 0 and end at len(indices)")
        if len(self.values) != len(self.indices):
            raise ValueError("indices and values must have the same length")
        if len(self.n_tokens) != n or len(self.truncated) != n:
            raise ValueError("n_tokens and truncated need one entry per document")
        return self

    @classmethod
    def from_rows(
        cls,
        rows: list[list[int]],
        values: list[list[float]],
        n_tokens: list[int] | None = None,
        truncated: list[bool] | None = None,
    ) -> SparseCodes:
        lengths = [len(r) for r in rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat_i = [i for r in rows for i in r]
        flat_v = [v for r in values for v in r]
        return cls(
            indptr=indptr,
            indices=np.asarray(flat_i, dtype=np.int32),
            values=np.asarray(flat_v, dtype=np.float16),
            n_tokens=np.asarray(n_tokens or [0] * len(rows), dtype=np.int32),
            truncated=np.asarray(truncated or [False] * len(rows), dtype=bool),
        )

    @classmethod
    def from_arrays(
        cls,
        indices: Sequence[np.ndarray],
        values: Sequence[np.ndarray],
        n_tokens: Sequence[int] | np.ndarray,
        truncated: Sequence[bool] | np.ndarray,
    ) -> SparseCodes:
        """One row per pair of arrays (feature ids, their values), e.g. one per document.

        >>> c = SparseCodes.from_arrays([np.array([3, 7]), np.array([], int)],
        ...                             [np.array([1.5, 0.25]), np.array([])], [12, 0], [True, False])
        >>> c.indptr.tolist(), c.row(0)[0].tolist(), c.truncated.tolist()
        ([0, 2, 2], [3, 7], [True, False])
        """
        if not indices:
            return cls._empty()
        indptr = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum([len(i) for i in indices], out=indptr[1:])
        return cls(
            indptr=indptr,
            indices=np.concatenate(indices).astype(np.int32, copy=False),
            values=np.concatenate(values).astype(np.float16, copy=False),
            n_tokens=np.asarray(n_tokens, dtype=np.int32),
            truncated=np.asarray(truncated, dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[lo:hi], self.values[lo:hi]

    def take(self, rows: Sequence[int] | np.ndarray) -> SparseCodes:
        """The given rows, in the given order (a list or an integer array).

        >>> c = SparseCodes.from_rows([[1], [2, 3], []], [[0.5], [1.0, 2.0], []])
        >>> c.take(np.array([1, 0])).indices.tolist()
        [2, 3, 1]
        """
        picked = [int(i) for i in rows]
        parts = [self.row(i) for i in picked]
        return SparseCodes.from_arrays([p[0] for p in parts], [p[1] for p in parts],
                                       self.n_tokens[picked], self.truncated[picked])

    @staticmethod
    def _empty() -> SparseCodes:
        return SparseCodes.from_rows([], [])

    @classmethod
    def concat(cls, parts: Sequence[SparseCodes]) -> SparseCodes:
        """Rows of ``parts`` one after the other.

        >>> a = SparseCodes.from_rows([[1]], [[0.5]], n_tokens=[3])
        >>> b = SparseCodes.from_rows([[], [2, 4]], [[], [1.0, 2.0]], n_tokens=[1, 2])
        >>> c = SparseCodes.concat([a, b])
        >>> c.indptr.tolist(), c.indices.tolist(), c.n_tokens.tolist()
        ([0, 1, 1, 3], [1, 2, 4], [3, 1, 2])
        """
        if not parts:
            return cls._empty()
        # Each part's row ends, shifted by the entries before the part: one vectorised add for
        # all parts (an aggregator concatenates hundreds of one-row parts per poll).
        rows = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        sizes = np.fromiter((len(p.indices) for p in parts), dtype=np.int64, count=len(parts))
        ends = np.concatenate([p.indptr[1:] for p in parts]).astype(np.int64, copy=False)
        indptr = np.zeros(int(rows.sum()) + 1, dtype=np.int64)
        indptr[1:] = ends + np.repeat(np.cumsum(sizes) - sizes, rows)
        return cls(
            indptr=indptr,
            indices=np.concatenate([p.indices for p in parts]).astype(np.int32, copy=False),
            values=np.concatenate([p.values for p in parts]).astype(np.float16, copy=False),
            n_tokens=np.concatenate([p.n_tokens for p in parts]).astype(np.int32, copy=False),
            truncated=np.concatenate([p.truncated for p in parts]).astype(bool, copy=False),
        )


class FeatureBatch(BaseModel):
    """The encoder's output: events with the sparse codes of their prompt and response.

    ``encoder_id`` names the model, layer and SAE that produced the codes; state refuses to mix
    codes of different encoders. ``prompt_windows``/``response_windows``: where the features
    fire inside each text (:class:`TokenWindows`), from an encoder that records them; ``None``
    otherwise (codes decoded from the features topic carry none).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    encoder_id: str
    d_sae: int = Field(gt=0)
    events: tuple[LLMEvent, ...]
    prompt: SparseCodes
    response: SparseCodes
    prompt_windows: TokenWindows | None = None
    response_windows: TokenWindows | None = None

    @model_validator(mode="after")
    def _check_lengths(self) -> FeatureBatch:
        if not (len(self.events) == len(self.prompt) == len(self.response)):
            raise ValueError("events, prompt codes and response codes must have equal lengths")
        for windows in (self.prompt_windows, self.response_windows):
            if windows is not None and len(windows) != len(self.events):
                raise ValueError("token windows need one row per event")
        return self

    def codes(self, field: TextField) -> SparseCodes:
        return self.prompt if field == "prompt" else self.response

    def windows(self, field: TextField) -> TokenWindows | None:
        """Where the features fire in ``field``'s texts (``None``: not recorded)."""
        return self.prompt_windows if field == "prompt" else self.response_windows

    def take(self, rows: Sequence[int]) -> FeatureBatch:
        """The given events (and their codes), in the given order."""
        return self.model_copy(update={
            "events": tuple(self.events[i] for i in rows),
            "prompt": self.prompt.take(rows),
            "response": self.response.take(rows),
            "prompt_windows": None if self.prompt_windows is None
            else self.prompt_windows.take(rows),
            "response_windows": None if self.response_windows is None
            else self.response_windows.take(rows),
        })

    @classmethod
    def concat(cls, parts: Sequence[FeatureBatch]) -> FeatureBatch:
        """Batches of one encoder, one after the other."""
        first = parts[0]
        for part in parts[1:]:
            if (part.encoder_id, part.d_sae) != (first.encoder_id, first.d_sae):
                raise ValueError(f"cannot concatenate codes of {part.encoder_id!r} and "
                                 f"{first.encoder_id!r}")
        return cls(
            encoder_id=first.encoder_id,
            d_sae=first.d_sae,
            events=tuple(e for p in parts for e in p.events),
            prompt=SparseCodes.concat([p.prompt for p in parts]),
            response=SparseCodes.concat([p.response for p in parts]),
            prompt_windows=_concat_windows([(p.prompt_windows, len(p)) for p in parts]),
            response_windows=_concat_windows([(p.response_windows, len(p)) for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.events)


def _concat_windows(parts: Sequence[tuple[TokenWindows | None, int]]) -> TokenWindows | None:
    """The parts' windows one after the other; a part without any contributes empty rows."""
    if all(w is None for w, _ in parts):
        return None
    return TokenWindows.concat([TokenWindows.empty(n) if w is None else w for w, n in parts])


__all__ = ["SparseCodes", "FeatureBatch"]
