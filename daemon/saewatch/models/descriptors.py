"""Text descriptors: a fixed list of plain measurements of each text, beside the SAE features.

Length, structure and script of a response are what a reader notices first ("answers got much
shorter") and what SAE features say only indirectly. Each descriptor is a number per document;
the state keeps, per (model_id, model_version, field) and window, a fixed histogram of it plus
its exact sum (:class:`DescriptorStats`): bounded memory, and counts add, so replicas and
snapshots merge exactly. Means are exact (sums); medians and quantiles come from the histogram,
interpolated within a bucket.

Buckets: counts use the integers 0..15 exactly, then 8 log-spaced buckets per doubling up to
2**18 (bucket width ≤ 9 % of its value, so a quoted median is within a few percent); shares use
fine linear buckets near 0 (uppercase and non-ASCII shares of English text live there) and 5 %
ones above 0.1. The list is fixed, so metrics keep a bounded cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from saewatch.models.events import TextField

DescriptorKind = Literal["count", "share"]

N_BINS = 128  # histogram buckets per descriptor (padded with +inf edges where fewer are used)


def _count_edges() -> np.ndarray:
    # 0..15 exactly (structure counts are small integers), then 16 * 2**(k/8): 112 log buckets.
    return np.concatenate([np.arange(16.0), 16.0 * 2.0 ** (np.arange(N_BINS - 16) / 8.0)])


def _share_edges() -> np.ndarray:
    used = np.concatenate([[0.0, 0.0025, 0.005, 0.0075], np.arange(1, 10) / 100,
                           np.arange(2, 20) / 20, [1.0]])
    return np.concatenate([used, np.full(N_BINS - len(used), np.inf)])


COUNT_EDGES = _count_edges()
SHARE_EDGES = _share_edges()


@dataclass(frozen=True)
class DescriptorSpec:
    """One descriptor: its name, kind and the words a finding about it uses.

    ``unit`` names the counted thing ("words"); ``presence`` what a document "has" when the count
    is at least 1 ("a code block"; ``None`` where presence says nothing, as for length);
    ``more``/``less`` the comparatives of a change of the median.

    >>> DESCRIPTORS[0].name, DESCRIPTORS[0].less, int(DESCRIPTORS[0].edges[3])
    ('words', 'shorter', 3)
    """

    name: str
    kind: DescriptorKind
    unit: str
    presence: str | None = None
    more: str = "more"
    less: str = "fewer"

    @property
    def edges(self) -> np.ndarray:
        """Lower edges of the ``N_BINS`` buckets (the last one is open-ended)."""
        return COUNT_EDGES if self.kind == "count" else SHARE_EDGES


# The order is the tie-break of the report (words first: the length a reader thinks in). Tokens
# are the encoder's own count, after its budget (encode.max_tokens_per_text) cut the text, so they
# saturate on long answers; words and characters are counted on the whole text and carry length.
DESCRIPTORS: tuple[DescriptorSpec, ...] = (
    DescriptorSpec("words", "count", "words", more="longer", less="shorter"),
    DescriptorSpec("characters", "count", "characters", more="longer", less="shorter"),
    DescriptorSpec("tokens", "count", "encoded tokens (capped by the token budget)",
                   more="longer", less="shorter"),
    DescriptorSpec("lines", "count", "lines", more="longer", less="shorter"),
    DescriptorSpec("list_items", "count", "list items", presence="a list"),
    DescriptorSpec("code_blocks", "count", "code blocks", presence="a code block"),
    DescriptorSpec("headers", "count", "markdown headers", presence="a markdown header"),
    DescriptorSpec("tables", "count", "markdown tables", presence="a markdown table"),
    DescriptorSpec("question_marks", "count", "question marks", presence="a question mark"),
    DescriptorSpec("non_ascii_share", "share", "share of letters outside ASCII",
                   presence="non-ASCII letters"),
    DescriptorSpec("uppercase_share", "share", "share of letters in upper case"),
)
DESCRIPTOR_NAMES: tuple[str, ...] = tuple(d.name for d in DESCRIPTORS)
N_DESCRIPTORS = len(DESCRIPTORS)
EDGES = np.stack([d.edges for d in DESCRIPTORS])  # [N_DESCRIPTORS, N_BINS]


def descriptor_index(name: str) -> int:
    """Position of descriptor ``name`` in :data:`DESCRIPTORS` (``KeyError`` if unknown)."""
    try:
        return DESCRIPTOR_NAMES.index(name)
    except ValueError:
        raise KeyError(f"no descriptor {name!r}; known: {', '.join(DESCRIPTOR_NAMES)}") from None


class DescriptorStats(BaseModel):
    """Histograms and sums of every descriptor over the documents of one key and window.

    ``hist[d, i]`` counts the documents whose descriptor ``d`` lies in bucket ``i`` (from
    ``EDGES[d, i]`` up to the next edge); ``sums[d]`` is the exact sum of its values.

    >>> hist = np.zeros((N_DESCRIPTORS, N_BINS), dtype=np.int64)
    >>> hist[0, [3, 5, 9]] = 1                     # three documents of 3, 5 and 9 words
    >>> s = DescriptorStats(model_id="m", model_version="v1", field="response", n_documents=3,
    ...                     hist=hist, sums=np.eye(N_DESCRIPTORS)[0] * 17)
    >>> s.median("words"), round(s.mean("words"), 2), round(s.share_at_least("words", 5), 3)
    (5.0, 5.67, 0.667)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model_id: str
    model_version: str
    field: TextField
    window: str = "all"
    n_documents: int = Field(ge=0)
    hist: np.ndarray  # int64[N_DESCRIPTORS, N_BINS]
    sums: np.ndarray  # float64[N_DESCRIPTORS]

    @model_validator(mode="after")
    def _check_arrays(self) -> DescriptorStats:
        if self.hist.shape != (N_DESCRIPTORS, N_BINS) or self.sums.shape != (N_DESCRIPTORS,):
            raise ValueError(f"hist must be [{N_DESCRIPTORS}, {N_BINS}] and sums "
                             f"[{N_DESCRIPTORS}]; got {self.hist.shape} and {self.sums.shape}")
        return self

    def mean(self, name: str) -> float:
        """Exact mean (0 without documents)."""
        return float(self.sums[descriptor_index(name)]) / max(self.n_documents, 1)

    def quantile(self, name: str, q: float) -> float:
        """The ``q`` quantile, interpolated linearly within its bucket (0 without documents).

        Integer buckets (counts below 16) hold one value each, so small counts are exact.
        """
        d = descriptor_index(name)
        counts = self.hist[d]
        total = int(counts.sum())
        if total == 0:
            return 0.0
        cum = np.cumsum(counts)
        target = q * total
        i = min(int(np.searchsorted(cum, target, side="left")), N_BINS - 1)
        edges = EDGES[d]
        lo = float(edges[i])
        hi = float(edges[i + 1]) if i + 1 < N_BINS and np.isfinite(edges[i + 1]) else lo
        if DESCRIPTORS[d].kind == "count" and hi - lo <= 1.0:
            return lo  # one integer per bucket: the value itself
        before = float(cum[i] - counts[i])
        frac = (target - before) / max(float(counts[i]), 1.0)
        return lo + (hi - lo) * min(max(frac, 0.0), 1.0)

    def median(self, name: str) -> float:
        """The median (see :meth:`quantile`); with an even count of one-integer values, the
        midpoint of the two middle ones."""
        d = descriptor_index(name)
        total = int(self.hist[d].sum())
        if DESCRIPTORS[d].kind == "count" and total and total % 2 == 0:
            low = self.quantile(name, (total / 2 - 0.5) / total)
            high = self.quantile(name, (total / 2 + 0.5) / total)
            return (low + high) / 2
        return self.quantile(name, 0.5)

    def at_least(self, d: int) -> np.ndarray:
        """Documents with descriptor ``d`` at or above each bucket's lower edge (``[N_BINS]``)."""
        counts: np.ndarray = np.cumsum(self.hist[d][::-1])[::-1]
        return counts

    def share_at_least(self, name: str, value: float) -> float:
        """Share of documents whose descriptor is at least ``value`` (a bucket edge)."""
        d = descriptor_index(name)
        i = int(np.searchsorted(EDGES[d], value, side="left"))
        return float(self.at_least(d)[i]) / max(self.n_documents, 1) if i < N_BINS else 0.0


class DescriptorSummary(BaseModel):
    """One descriptor of one version and field over everything seen (what metrics export)."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    model_version: str
    field: TextField
    descriptor: str
    documents: int
    mean: float
    median: float
    present_share: float  # documents with a value above zero


class DescriptorFinding(BaseModel):
    """How one descriptor differs between baseline and candidate, in numbers and in words.

    ``effect`` is the largest gap between the two sides' shares of documents at or above a
    bucket edge (a Kolmogorov–Smirnov distance on the histogram, signed: > 0 when the candidate's
    values are larger); ``moved`` says whether the always-valid test alarmed
    (``log_evidence >= threshold``). ``statistic`` names what ``baseline``/``candidate`` hold:
    ``median``, ``mean`` or ``present`` (share of documents with at least one).
    """

    model_config = ConfigDict(frozen=True)

    descriptor: str
    kind: DescriptorKind
    statistic: Literal["median", "mean", "present"]
    baseline: float
    candidate: float
    mean_baseline: float
    mean_candidate: float
    relative_change: float | None = None  # candidate / baseline - 1 of the statistic
    effect: float
    direction: Literal["up", "down", "none"]
    log_evidence: float
    threshold: float
    moved: bool
    text: str


__all__ = [
    "COUNT_EDGES", "DESCRIPTORS", "DESCRIPTOR_NAMES", "DescriptorFinding", "DescriptorKind",
    "DescriptorSpec", "DescriptorStats", "DescriptorSummary", "EDGES", "N_BINS", "N_DESCRIPTORS",
    "SHARE_EDGES", "descriptor_index",
]
