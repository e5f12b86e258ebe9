"""Builders of small, valid :class:`FeatureBatch` values for doctests, tests and benchmarks.

Like bytewax's ``testing.py``: real types, no mocks.

>>> b = make_batch([[1], [0, 3]], d_sae=4, version="v2")
>>> len(b), b.events[1].model_version, b.response.row(1)[0].tolist()
(2, 'v2', [0, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from saewatch.models import FeatureBatch, LLMEvent, SparseCodes

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def make_batch(
    rows: Sequence[Sequence[int]],
    d_sae: int,
    version: str = "v1",
    model_id: str = "m",
    values: Sequence[Sequence[float]] | None = None,
    prompt_rows: Sequence[Sequence[int]] | None = None,
    times: Sequence[datetime] | None = None,
    metadata: Sequence[dict[str, str]] | None = None,
    encoder_id: str = "test-encoder",
    start: int = 0,
    texts: Sequence[str] | None = None,
    prompt_texts: Sequence[str] | None = None,
    n_tokens: Sequence[int] | None = None,
) -> FeatureBatch:
    """A batch whose response codes are ``rows`` (feature ids) and prompt codes ``prompt_rows``;
    ``texts``/``prompt_texts`` replace the placeholder response/prompt texts, and ``n_tokens``
    the responses' token counts (0 by default).

    >>> make_batch([[1], []], 4, n_tokens=[12, 3]).response.n_tokens.tolist()
    [12, 3]
    """
    n = len(rows)
    vals = values or [[1.0] * len(r) for r in rows]
    prompts = prompt_rows or [[] for _ in rows]
    events = tuple(
        LLMEvent(
            event_id=f"e{start + i}",
            timestamp=times[i] if times else T0 + timedelta(seconds=start + i),
            model_id=model_id,
            model_version=version,
            prompt=prompt_texts[i] if prompt_texts else f"prompt {start + i}",
            response=texts[i] if texts else f"response {start + i}",
            metadata=metadata[i] if metadata else {},
        )
        for i in range(n)
    )
    return FeatureBatch(
        encoder_id=encoder_id,
        d_sae=d_sae,
        events=events,
        prompt=SparseCodes.from_rows([list(r) for r in prompts], [[1.0] * len(r) for r in prompts]),
        response=SparseCodes.from_rows([list(r) for r in rows], [list(v) for v in vals],
                                       n_tokens=list(n_tokens) if n_tokens is not None else None),
    )


def random_codes(
    n: int, d_sae: int, nnz: int, rng: np.random.Generator, zipf: float = 1.1
) -> SparseCodes:
    """``n`` documents with ``nnz`` distinct features each, drawn from a Zipf-like profile.

    SAE feature frequencies are heavy-tailed, so a few features fire in most documents and most
    fire rarely; this reproduces that shape for benchmarks.
    """
    weights = 1.0 / np.arange(1, d_sae + 1) ** zipf
    weights = rng.permutation(weights / weights.sum())
    draws = rng.choice(d_sae, size=(n, nnz * 2), p=weights)
    rows = [np.unique(r)[:nnz] for r in draws]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int32) if n else np.zeros(0, dtype=np.int32)
    values = rng.gamma(2.0, 1.0, size=len(indices)).astype(np.float16) + np.float16(0.01)
    return SparseCodes(
        indptr=indptr, indices=indices, values=values,
        n_tokens=np.full(n, 128, dtype=np.int32), truncated=np.zeros(n, dtype=bool),
    )
