"""Feature presence by token-length stratum among the retrieval ring's events, counted on demand.

A shorter answer gives a feature fewer tokens to fire on, so a candidate version whose answers
are shorter loses features for that reason alone. To tell such changes apart from the others the
diff compares the two versions *within* strata of equal token length
(:mod:`saewatch.diff.length`), which needs per-document presence and length: the counts hold
neither, the ring holds both (each event's ``SparseCodes.n_tokens`` per field, beside its
postings). ``RetrievalSource.length_strata`` counts, per version and stratum, the documents and
those with each wanted feature: one vectorised search per chunk (:func:`posting_matches`), then
one ``bincount`` over (version, stratum, feature). Linear in the ring's live events and the
wanted features' postings, like :mod:`saewatch.state.ring_cooccurrence`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from saewatch.models import LengthStrata, TextField
from saewatch.state.exceptions import InvalidStrataError

logger = logging.getLogger(__name__)

UNKNOWN_TOKENS = -1  # a ring slot's token count when its event came from an older snapshot


def strata_of(tokens: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Stratum of each token count (``edges[s - 1] <= t < edges[s]``), -1 where unknown.

    >>> strata_of(np.array([0, 9, 10, 250, -1]), [10, 100]).tolist()
    [0, 0, 1, 2, -1]
    """
    cut = np.asarray(edges, dtype=np.int64)
    if len(cut) and (np.any(np.diff(cut) <= 0) or cut[0] < 0):
        raise InvalidStrataError(f"stratum edges must be non-negative and increase strictly: "
                                 f"{list(map(int, cut))}")
    out = np.searchsorted(cut, tokens, side="right").astype(np.int64)
    out[tokens < 0] = -1
    return out


def count_length_strata(
    model_id: str, field: TextField, versions: Sequence[str], features: Sequence[int],
    edges: Sequence[int], side: np.ndarray, tokens: np.ndarray, seq: np.ndarray, col: np.ndarray,
    saturated: np.ndarray, oldest: int,
) -> LengthStrata:
    """Counts from the live ring: event ``oldest + i`` is of version ``versions[side[i]]``
    (-1: not asked for) with ``tokens[i]`` tokens; posting ``p`` says event ``seq[p]`` has
    ``features[col[p]]``; ``saturated`` lists the sequence numbers of saturated events.

    >>> s = count_length_strata("m", "response", ["v1", "v2"], [7], [10],
    ...     side=np.array([0, 0, 1, 1, -1]), tokens=np.array([5, 50, 5, -1, 5]),
    ...     seq=np.array([100, 101, 104]), col=np.zeros(3, np.int64),
    ...     saturated=np.array([101]), oldest=100)
    >>> s.n_documents.tolist(), s.present[:, :, 0].tolist(), s.unknown.tolist()
    ([[1, 1], [1, 0]], [[1, 1], [0, 0]], [0, 1])
    >>> s.saturated.tolist()
    [[0, 1], [0, 0]]
    """
    n_versions, n_strata, k = len(versions), len(edges) + 1, len(features)
    stratum = strata_of(tokens, edges)
    counted = (side >= 0) & (stratum >= 0)
    cell = side * n_strata + stratum  # (version, stratum) of each live event
    n_documents = np.bincount(cell[counted], minlength=n_versions * n_strata)
    unknown = np.bincount(side[(side >= 0) & (stratum < 0)], minlength=n_versions)
    # No (document, feature) pair repeats: a chunk holds an event's features once (a CSR row
    # is a set) and the ring's chunks hold disjoint events, so no sort to deduplicate them.
    at = seq - oldest
    keep = counted[at]
    present = np.bincount(cell[at[keep]] * k + col[keep], minlength=n_versions * n_strata * k)
    cut = saturated - oldest
    full = np.bincount(cell[cut[counted[cut]]], minlength=n_versions * n_strata)
    return LengthStrata(
        model_id=model_id, field=field, versions=tuple(versions),
        features=tuple(int(f) for f in features),
        edges=tuple(np.asarray(edges, dtype=np.int64).tolist()),
        n_documents=n_documents.reshape(n_versions, n_strata).astype(np.int64),
        present=present.reshape(n_versions, n_strata, k).astype(np.int64),
        saturated=full.reshape(n_versions, n_strata).astype(np.int64),
        unknown=unknown.astype(np.int64),
    )
