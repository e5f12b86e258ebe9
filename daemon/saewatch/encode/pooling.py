"""Max-pooling SAE activations into per-document sparse codes, on the device, batch by batch.

Each model batch scatters its tokens' SAE activations into the rows of its documents in one
dense ``[documents, d_sae]`` buffer on the device (``scatter_reduce`` with ``amax``; SAE
activations are >= 0, so the zero start is exact). Only when the buffer is full, or at the end,
is it read: one threshold, one ``nonzero`` (the only device sync) and one copy of the fired
features to the host, where the CSR rows are put back in input order with array operations.

For sae-lens' plain TopK SAE the dense ``[tokens, d_sae]`` activations are never built: the
top-k values and ids of each token are scattered directly. The pre-activations are computed
with the SAE's own operations (:func:`topk_codes`), so the pooled values are bit-identical.

>>> pool = MaxPool(n_docs=3, d_sae=4, device=torch.device("cpu"), threshold=0.0)
>>> feats = torch.tensor([[0.0, 2.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
>>> pool.add_dense([2, 0], torch.tensor([0, 0, 1]), feats)  # docs 2 and 0; doc 1 had no tokens
>>> codes = pool.finish(np.array([2, 0, 1]), np.zeros(3, bool))
>>> codes.indptr.tolist(), codes.indices.tolist(), codes.values.tolist()
([0, 1, 1, 3], [3, 0, 1], [3.0, 1.0, 2.0])
"""

from __future__ import annotations

import numpy as np
import torch
from sae_lens import SAE
from sae_lens.saes.topk_sae import TopK, TopKSAE

from saewatch.encode.batching import to_host
from saewatch.models import SparseCodes

# Clip so an outlier never becomes inf in float16.
F16_MAX = 65504.0
# The pooled buffer holds at most this many activations (256 MB in fp32) unless one batch needs
# more: d_sae 16k x 4,096 documents, or the 512 documents of a full batch at d_sae 131k.
MAX_POOLED_ELEMENTS = 2**26


def is_plain_topk(sae: SAE) -> bool:
    """Whether :func:`topk_codes` reproduces ``sae.encode`` exactly (sae-lens' own TopK SAE)."""
    fn = getattr(sae, "activation_fn", None)
    return type(sae) is TopKSAE and isinstance(fn, TopK) and type(fn) is TopK and (
        not fn.use_sparse_activations)


def topk_codes(sae: SAE, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nonzero part of ``sae.encode(acts)`` for a plain TopK SAE: values and feature ids.

    The same operations as ``TopKSAE.encode`` (sae-lens 6.x) up to its final scatter into a
    dense ``[tokens, d_sae]`` tensor, which is what this skips.
    """
    sae_in = sae.process_sae_in(acts)
    hidden_pre = sae.hook_sae_acts_pre(sae_in @ sae.W_enc + sae.b_enc)
    if sae.cfg.rescale_acts_by_decoder_norm:
        hidden_pre = hidden_pre * sae.W_dec.norm(dim=-1)
    k = int(sae.activation_fn.k)
    values, indices = torch.topk(hidden_pre, k=k, dim=-1, sorted=False)
    return values.relu(), indices


class MaxPool:
    """Max-pooled SAE codes of ``n_docs`` documents, filled batch by batch.

    Documents get consecutive rows ("slots") of the buffer in the order their batches come;
    :meth:`finish` returns the codes in document order. A document without tokens never gets
    a slot and has an empty row.

    Parameters
    ----------
    n_docs, d_sae
        Documents of the field, SAE width.
    device
        Where the buffer lives (the SAE's device).
    threshold
        A feature fires in a document when its pooled activation exceeds this.
    max_elements
        Buffer size before it is flushed to the host (at least one batch).
    """

    def __init__(self, n_docs: int, d_sae: int, device: torch.device, threshold: float,
                 max_elements: int = MAX_POOLED_ELEMENTS) -> None:
        self.n_docs = n_docs
        self.d_sae = d_sae
        self.device = device
        self.threshold = threshold
        self.max_rows = max(1, min(n_docs, max_elements // d_sae))
        self._buffer: torch.Tensor | None = None
        self._slot_docs: list[int] = []  # document of each used slot of the buffer
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    @torch.inference_mode()
    def add_dense(self, docs: list[int], doc_index: torch.Tensor, feats: torch.Tensor) -> None:
        """Pool ``feats[i]`` (``[tokens, d_sae]``) into document ``docs[doc_index[i]]``."""
        buffer, base = self._reserve(docs, feats.dtype)
        try:
            rows = buffer[base : base + len(docs)]
            rows.scatter_reduce_(0, doc_index.unsqueeze(1).expand_as(feats), feats, "amax",
                                 include_self=True)
        except torch.cuda.OutOfMemoryError:
            self._release(base)
            raise

    @torch.inference_mode()
    def add_topk(self, docs: list[int], doc_index: torch.Tensor, values: torch.Tensor,
                 indices: torch.Tensor) -> None:
        """Pool the top-k ``values`` at feature ids ``indices`` (``[tokens, k]``) likewise."""
        buffer, base = self._reserve(docs, values.dtype)
        try:
            flat = ((doc_index + base) * self.d_sae).unsqueeze(1) + indices
            buffer.view(-1).scatter_reduce_(0, flat.reshape(-1), values.reshape(-1), "amax",
                                            include_self=True)
        except torch.cuda.OutOfMemoryError:
            self._release(base)
            raise

    @torch.inference_mode()
    def _reserve(self, docs: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, int]:
        if self._buffer is not None and len(self._slot_docs) + len(docs) > len(self._buffer):
            self._flush()
            if len(docs) > len(self._buffer):
                self._buffer = None
        if self._buffer is None:
            rows = max(self.max_rows, len(docs))
            self._buffer = torch.zeros(rows, self.d_sae, dtype=dtype, device=self.device)
        base = len(self._slot_docs)
        self._slot_docs.extend(docs)
        return self._buffer, base

    @torch.inference_mode()
    def _release(self, base: int) -> None:
        """Undo a reservation whose batch failed (CUDA OOM: it is retried in halves)."""
        assert self._buffer is not None
        self._buffer[base : len(self._slot_docs)].zero_()
        del self._slot_docs[base:]

    @torch.inference_mode()
    def _flush(self, reuse: bool = True) -> None:
        if self._buffer is None or not self._slot_docs:
            return
        used = self._buffer[: len(self._slot_docs)]
        if used.device.type == "cpu" and used.dtype == torch.float32:
            counts, cols, values = _fired_host(used.numpy(), self.threshold)
        else:
            counts, cols, values = _fired_device(used, self.threshold)
        self._parts.append((np.asarray(self._slot_docs, dtype=np.int64), counts, cols,
                            values.astype(np.float16)))
        if reuse:
            used.zero_()
        self._slot_docs = []

    def finish(self, n_tokens: np.ndarray, truncated: np.ndarray) -> SparseCodes:
        """The codes of all documents in document order (rows of slot-less documents empty)."""
        self._flush(reuse=False)
        self._buffer = None
        if not self._parts:
            empty = np.zeros(0, dtype=np.int32)
            return _codes(np.zeros(self.n_docs + 1, np.int64), empty, empty.astype(np.float16),
                          n_tokens, truncated)
        slot_docs, counts, cols, values = (np.concatenate(p) for p in zip(*self._parts,
                                                                          strict=True))
        self._parts = []
        return _codes(*_reorder(slot_docs, counts, cols, values, self.n_docs),
                      n_tokens, truncated)


def _fired_device(used: torch.Tensor, threshold: float) -> tuple[np.ndarray, ...]:
    """Per row: how many features fired, their ids and values (one sync, one copy back)."""
    slots, cols = (used > threshold).nonzero(as_tuple=True)
    values = used[slots, cols].clamp(max=F16_MAX).float()
    counts = torch.bincount(slots, minlength=len(used))
    return tuple(to_host([counts, cols.to(torch.int32), values]))


def _fired_host(used: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """The same as :func:`_fired_device` in numpy, for a CPU buffer: these small steps then
    run on one thread instead of waking torch's intra-op threads once each."""
    slots, cols = np.nonzero(used > threshold)
    values = np.minimum(used[slots, cols], np.float32(F16_MAX))
    return np.bincount(slots, minlength=len(used)), cols.astype(np.int32), values


def _reorder(slot_docs: np.ndarray, counts: np.ndarray, cols: np.ndarray, values: np.ndarray,
             n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows in slot order -> CSR rows in document order, one gather over all features."""
    slot_start = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=slot_start[1:])
    per_doc = np.zeros(n_docs, dtype=np.int64)
    per_doc[slot_docs] = counts
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(per_doc, out=indptr[1:])
    order = np.argsort(slot_docs, kind="stable")  # slots in document order
    lengths = counts[order]
    shift = np.repeat(slot_start[order] - indptr[slot_docs[order]], lengths)
    source = np.arange(int(indptr[-1]), dtype=np.int64) + shift
    return indptr, cols[source], values[source]


def _codes(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_tokens: np.ndarray,
           truncated: np.ndarray) -> SparseCodes:
    return SparseCodes(indptr=indptr, indices=indices.astype(np.int32, copy=False),
                       values=values.astype(np.float16, copy=False),
                       n_tokens=np.asarray(n_tokens, dtype=np.int32),
                       truncated=np.asarray(truncated, dtype=bool))


__all__ = ["F16_MAX", "MAX_POOLED_ELEMENTS", "MaxPool", "is_plain_topk", "topk_codes"]
