"""Peak windows: where in each document its features fire, for the highlighted examples.

Beside max-pooling (:mod:`saewatch.encode.pooling`), each model batch's nonzero token-level
SAE activations are read once more, on the device: per (document, feature) the peak token (the
first token reaching the pooled maximum), and the feature's activation on the ``WINDOW_TOKENS``
tokens around it. Only the pairs the example store can use are kept, and at most
``MAX_WINDOWS_PER_DOC`` of them per document (see there), so what goes to the host is bounded
by the number of documents, not by their tokens. :meth:`PeakWindows.finish` assembles them with
the tokens' character spans into a :class:`~saewatch.models.TokenWindows`.

>>> pw = PeakWindows(n_docs=1, d_sae=4, threshold=0.0, presence=None, window=3)
>>> # tokens 0..3 of document 0; feature 2 fires on tokens 1 (0.5) and 2 (1.5)
>>> pw.add([0], torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([2, 2]),
...        torch.tensor([0.5, 1.5]), n_tokens=torch.tensor([4]))
>>> tw = pw.finish([[(0, 2), (3, 5), (6, 9), (10, 12)]])
>>> tw.features.tolist(), tw.first.tolist(), tw.acts.tolist()
([2], [0], [[0.0, 0.5, 1.5]])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from saewatch.encode.batching import to_host
from saewatch.encode.pooling import F16_MAX
from saewatch.models import TokenWindows
from saewatch.models.windows import indptr_of

logger = logging.getLogger(__name__)

# Tokens in a window: enough to read the context of the peak (~100 characters of English).
WINDOW_TOKENS = 24
# Of them, this many come before the peak: in a causal model what makes a token fire is before it.
TOKENS_BEFORE_PEAK = 16
# Windows kept per document, its features ranked by pooled activation over their presence
# threshold: the shipped SAE's presence thresholds leave a median 145 (p90 239) features per
# response and 22 per prompt, so nearly every document keeps all of its present ones; without
# presence thresholds (1,671 features per response) its strongest 256. Bound per batch of 512
# documents and field: 512 x 256 x (24 x 2 + 8) bytes = 7.3 MB on the host.
MAX_WINDOWS_PER_DOC = 256


class PeakWindows:
    """Peak windows of ``n_docs`` documents of one field, filled batch by batch.

    Parameters
    ----------
    n_docs, d_sae
        Documents of the field, SAE width.
    threshold
        The encoder's threshold: a pair is kept only where its pooled value exceeds it.
    presence
        Per-feature presence thresholds (float32 ``[d_sae]``) or ``None``: a pair is kept only
        where the pooled value reaches it, as in the codes.
    window, before, max_per_doc
        ``WINDOW_TOKENS``, ``TOKENS_BEFORE_PEAK``, ``MAX_WINDOWS_PER_DOC``.
    """

    def __init__(self, n_docs: int, d_sae: int, threshold: float, presence: np.ndarray | None,
                 window: int = WINDOW_TOKENS, before: int = TOKENS_BEFORE_PEAK,
                 max_per_doc: int = MAX_WINDOWS_PER_DOC) -> None:
        self.n_docs = n_docs
        self.d_sae = d_sae
        self.threshold = threshold
        self.presence = presence
        self.window = window
        self.before = min(before, window - 1)
        self.max_per_doc = max_per_doc
        self._presence_t: torch.Tensor | None = None
        self._parts: list[tuple[np.ndarray, ...]] = []  # doc, feature, first, acts

    @torch.inference_mode()
    def add(self, docs: list[int], rows: torch.Tensor, pos: torch.Tensor, features: torch.Tensor,
            values: torch.Tensor, n_tokens: torch.Tensor) -> None:
        """Nonzero token activations of one batch: ``values[i]`` of feature ``features[i]`` on
        token ``pos[i]`` of row ``rows[i]`` (document ``docs[row]``, which has ``n_tokens[row]``
        text tokens)."""
        if len(values) == 0:
            return
        if values.device.type != "cpu":
            self._add(docs, rows, pos, features, values, n_tokens)
            return
        # ~20 small element-wise steps: on a busy CPU, waking torch's intra-op threads for
        # each costs more than the work (measured 50 ms on one thread against 770 ms on two
        # for 262k entries on a loaded 2-core host). Torch has no per-call thread count.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._add(docs, rows, pos, features, values, n_tokens)
        finally:
            torch.set_num_threads(threads)

    def _add(self, docs: list[int], rows: torch.Tensor, pos: torch.Tensor, features: torch.Tensor,
             values: torch.Tensor, n_tokens: torch.Tensor) -> None:
        # Dense [rows * d_sae] buffers, like the pooling buffer of one batch: a scatter is
        # linear, where a sort of the entries (torch.unique) costs ~25x more on a CPU.
        device, size = values.device, len(n_tokens) * self.d_sae
        key = rows * self.d_sae + features.long()
        peak = torch.zeros(size, dtype=values.dtype, device=device)
        peak.scatter_reduce_(0, key, values, "amax", include_self=True)  # activations are >= 0
        at_peak = values == peak[key]
        first_pos = torch.full((size,), 2**31 - 1, dtype=torch.long, device=device)
        first_pos.scatter_reduce_(0, key[at_peak], pos[at_peak], "amin", include_self=True)
        sel = self._select(peak)
        if len(sel) == 0:
            return
        u_row, u_feat = sel // self.d_sae, sel % self.d_sae
        first = (first_pos[sel] - self.before).clamp(min=0)
        first = torch.minimum(first, (n_tokens[u_row] - self.window).clamp(min=0))
        slot = torch.full((size,), -1, dtype=torch.long, device=device)
        slot[sel] = torch.arange(len(sel), device=device)
        s = slot[key]
        offset = pos - first[s.clamp(min=0)]
        ok = (s >= 0) & (offset >= 0) & (offset < self.window)
        acts = torch.zeros(len(sel), self.window, dtype=torch.float32, device=device)
        acts[s[ok], offset[ok]] = values[ok].float().clamp(max=F16_MAX)
        host = to_host([u_row, u_feat.to(torch.int32), first.to(torch.int32), acts.half()])
        self._parts.append((np.asarray(docs, dtype=np.int64)[host[0]], *host[1:]))

    def _select(self, peak: torch.Tensor) -> torch.Tensor:
        """Flat ``row * d_sae + feature`` of the pairs to keep: present as in the codes (pooled
        value above ``threshold``, its float16 at least the presence threshold), and of them
        the strongest ``max_per_doc`` per document, ascending."""
        cand = (peak > self.threshold).nonzero(as_tuple=True)[0]
        score = peak[cand].float().clamp(max=F16_MAX).half().float()  # the value the codes hold
        if self.presence is not None:
            if self._presence_t is None or self._presence_t.device != peak.device:
                self._presence_t = torch.tensor(self.presence, device=peak.device)
            t = self._presence_t[cand % self.d_sae]
            present = score >= t
            cand, score = cand[present], score[present] / t[present].clamp(min=1e-6)
        row = cand // self.d_sae
        order = torch.argsort(score, descending=True, stable=True)
        order = order[torch.argsort(row[order], stable=True)]  # by row, best first within it
        ranked = row[order]
        rank = token_positions(ranked, torch.bincount(ranked))  # 0 = a row's best
        kept: torch.Tensor = cand[order[rank < self.max_per_doc]]
        return kept.sort().values

    def finish(self, spans: Sequence[Sequence[tuple[int, int]] | None]) -> TokenWindows:
        """The windows of all documents, with ``spans[d]``: document ``d``'s token spans
        (``None``: the tokenizer gave no offsets, and the document gets no windows)."""
        known = [s is not None for s in spans]
        lengths = [len(s) if s is not None else 0 for s in spans]
        flat = [t for s in spans if s is not None for t in s]
        token_spans = np.array(flat, dtype=np.int32).reshape(-1, 2)
        parts = self._parts or [(np.zeros(0, np.int64), np.zeros(0, np.int32),
                                 np.zeros(0, np.int32), np.zeros((0, self.window), np.float16))]
        doc, feat, first, acts = (np.concatenate(p) for p in zip(*parts, strict=True))
        self._parts = []
        mask = np.asarray(known, dtype=bool)[doc]
        doc, feat, first, acts = doc[mask], feat[mask], first[mask], acts[mask]
        order = np.lexsort((feat, doc))
        return TokenWindows(
            token_indptr=indptr_of(lengths), token_spans=token_spans,
            pair_indptr=indptr_of(np.bincount(doc, minlength=self.n_docs)),
            features=feat[order], first=first[order], acts=acts[order])


def token_positions(doc_index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Each token's position among its row's tokens, given the tokens per row (``counts``;
    tokens come row by row, in order).

    >>> token_positions(torch.tensor([0, 0, 1, 1, 1]), torch.tensor([2, 3])).tolist()
    [0, 1, 0, 1, 2]
    """
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(len(doc_index), device=doc_index.device) - starts[doc_index]


__all__ = ["MAX_WINDOWS_PER_DOC", "PeakWindows", "TOKENS_BEFORE_PEAK", "WINDOW_TOKENS",
           "token_positions"]
