"""Low-dimensional views of binarized SAE codes for clustering: random, or PCA learnt at warm-up.

A document's code becomes a vector ``w[j] / ||w[active]||`` over its active features ``j`` (IDF
weights ``w``, so features firing everywhere count less), multiplied by a ``[d_sae, dims]`` basis.
A seeded Gaussian basis (Johnson-Lindenstrauss) keeps distances only up to a distortion of order
``sqrt(1 / dims)``, which at 32-64 dims swamps the small distances between topics of SAE codes
(docs/BENCHMARKS.md, "State"); the principal components of the warm-up documents keep exactly the
directions along which documents differ. Both bases are fixed once learnt, so a cluster keeps its
meaning.

>>> import numpy as np
>>> indptr, indices = np.array([0, 2, 4, 6, 8]), np.array([0, 1, 0, 1, 5, 6, 5, 6])
>>> w, basis = learn_basis(indptr, indices, d_sae=8, dims=2, seed=0)
>>> x = project(indptr, indices, w, basis)
>>> bool(np.allclose(x[0], x[1])), bool(np.linalg.norm(x[0] - x[2]) > 1)
(True, True)
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


def random_basis(d_sae: int, dims: int, seed: int) -> np.ndarray:
    """A seeded Gaussian ``[d_sae, dims]`` basis (unit variance per output coordinate)."""
    return np.random.default_rng(seed).standard_normal((d_sae, dims)).astype(np.float32)


def idf_weights(indices: np.ndarray, n_docs: int, d_sae: int) -> np.ndarray:
    """Smoothed inverse document frequencies ``log((n + 1) / (df + 1)) + 1``."""
    df = np.bincount(indices, minlength=d_sae)
    return (np.log((n_docs + 1) / (df + 1)) + 1).astype(np.float32)


def weighted_rows(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """Binarized rows weighted by ``weights`` and scaled to unit length (empty rows stay 0)."""
    data = weights[indices].astype(np.float32)
    lengths = np.diff(indptr)
    # bincount over row ids, not reduceat: reduceat fails on a trailing empty row.
    rows = np.repeat(np.arange(len(lengths)), lengths)
    norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=len(lengths)))
    norms = np.where(lengths > 0, norms, 1.0)
    data = data / np.repeat(norms, lengths).astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(lengths), len(weights)))


def project(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray,
            basis: np.ndarray) -> np.ndarray:
    """``[n, dims]`` float32 coordinates of CSR rows in ``basis``."""
    return np.asarray(weighted_rows(indptr, indices, weights) @ basis, dtype=np.float32)


POWER_ITERATIONS = 3  # subspace iterations of the randomized SVD; 2-4 suffice for PCA
OVERSAMPLING = 10  # extra random directions of the randomized SVD (Halko et al., 2011)


def learn_basis(
    indptr: np.ndarray, indices: np.ndarray, d_sae: int, dims: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """IDF weights and the top ``dims`` principal directions of the (centred) weighted rows.

    Seeded randomized SVD (Halko, Martinsson & Tropp, 2011) of the implicitly centred sparse
    matrix: a few sparse products and QRs of ``[n, dims + 10]`` blocks, no dense ``[n, d_sae]``
    copy. Directions beyond the rank of the sample are left at zero.
    """
    n = len(indptr) - 1
    weights = idf_weights(indices, n, d_sae)
    x = weighted_rows(indptr, indices, weights).astype(np.float64)
    mean = np.asarray(x.mean(axis=0)).ravel()
    basis = np.zeros((d_sae, dims), dtype=np.float32)
    k = min(dims, n - 1, d_sae - 1)
    if k < 1:
        return weights, basis

    def right(m: np.ndarray) -> np.ndarray:  # centred X @ m
        return np.asarray(x @ m) - np.outer(np.ones(n), mean @ m)

    def left(q: np.ndarray) -> np.ndarray:  # centred X.T @ q
        return np.asarray(x.T @ q) - np.outer(mean, q.sum(axis=0))

    omega = np.random.default_rng(seed).standard_normal((d_sae, min(k + OVERSAMPLING, n)))
    q, _ = np.linalg.qr(right(omega))
    for _ in range(POWER_ITERATIONS):
        q, _ = np.linalg.qr(right(np.linalg.qr(left(q))[0]))
    _u, _s, vt = np.linalg.svd(left(q).T, full_matrices=False)
    basis[:, :k] = vt[:k].T
    return weights, basis
