"""Calibrating per-feature presence thresholds on a reference corpus (``saewatch
calibrate-thresholds``; the thresholds themselves: :mod:`saewatch.encode.presence`).

The rule, kept simple on purpose:

1. every corpus event gives two documents, its prompt and its response, tokenized and encoded
   exactly as the daemon does (chat template per field, ``encode.max_tokens_per_text``);
   documents without tokens are left out;
2. for each feature ``j``, ``q_j`` is the ``quantile`` (default the 99.9th percentile, numpy's
   linear interpolation) of its nonzero *token-level* activations over the corpus, or their
   max when it has fewer than ``min_count`` of them;
3. a feature never active on the corpus gets the median ``q`` of the others: with no evidence
   it is treated as a typical feature, so one dead on the corpus can still show up when it
   fires strongly live (``+inf`` would hide it for good);
4. ``t_j = rho * q_j`` with one global ``rho``, found by bisection so that the median number of
   present features per document (pooled value ``>= t_j``; prompts and responses together, or
   the documents of ``fit_fields`` only) equals the target; where the median
   stays on that target over a range of ``rho``, the middle of the range is taken, so rounding
   the thresholds cannot tip it.

The token-level activations come from the encoder's own pass (:meth:`SAEEncoder.encode_docs`
with ``on_tokens``), so the pooled codes and the quantiles see one forward.

>>> feats, vals = np.array([0, 0, 0, 2]), np.array([1.0, 3.0, 2.0, 5.0], np.float32)
>>> feature_quantiles(feats, vals, d_sae=3, quantile=0.5, min_count=1).tolist()
[2.0, nan, 5.0]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saewatch.config import EncodeSettings, SaeRef
from saewatch.datasets import SAMPLE_DIR, alpaca_events, alpaca_models
from saewatch.encode.default import sae_folder
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.exceptions import PresenceThresholdsError
from saewatch.encode.presence import PRESENCE_FILE, PresenceInfo, PresenceThresholds
from saewatch.models import TEXT_FIELDS, LLMEvent, SparseCodes, TextField

logger = logging.getLogger(__name__)

DEFAULT_QUANTILE = 0.999
# Below this many nonzero activations the 99.9th percentile is barely an order statistic of
# its own: the max is used (and said so in the file).
DEFAULT_MIN_COUNT = 1_000
DEFAULT_TARGET = 48.0
CHUNK_DOCS = 256  # documents per encoder call: bounds the pooling buffer, paces the log
BISECTION_STEPS = 60
# Left out of the default corpus: NullModel's 805 responses are one and the same garbage string,
# which would be a third of the documents and weigh its features 805 times.
SAMPLE_EXCLUDED = frozenset({"NullModel"})
RULE = "t_j = rho * q_j (q_j: quantile of feature j's nonzero token activations, max below "\
       "min_count of them, median q for features never active); rho: median present = target"


@dataclass(frozen=True)
class CorpusActivations:
    """What calibration reads of a corpus: pooled codes per field (scalar threshold only) and
    every nonzero token-level activation as (feature id, value).

    >>> codes = SparseCodes.from_rows([[1, 2]], [[0.5, 2.0]], n_tokens=[2])
    >>> data = CorpusActivations({"prompt": codes, "response": codes}, np.array([1, 2, 2]),
    ...                          np.array([0.5, 2.0, 1.0], np.float32))
    >>> len(data.all_codes()), len(data.all_codes(["response"]))
    (2, 1)
    """

    codes: Mapping[TextField, SparseCodes]
    features: np.ndarray  # int32
    values: np.ndarray  # float32, > 0

    def all_codes(self, fields: Sequence[TextField] | None = None) -> SparseCodes:
        """The codes of ``fields`` (default: all), one field after the other."""
        return SparseCodes.concat([self.codes[f] for f in (fields or list(self.codes))])


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` returns: the thresholds and the corpus read to fit them (whose
    pooled codes, filtered, give the figures with and without them).

    >>> c = Calibration(PresenceThresholds(np.ones(2)), CorpusActivations({}, np.zeros(0, int),
    ...                 np.zeros(0, np.float32)))
    >>> c.thresholds.d_sae
    2
    """

    thresholds: PresenceThresholds
    corpus: CorpusActivations


def read_corpus(encoder: SAEEncoder, texts: Mapping[TextField, Sequence[str]]) -> CorpusActivations:
    """Encode ``texts`` per field, keeping the token-level activations as well."""
    if encoder.presence is not None:
        raise PresenceThresholdsError(
            "calibration needs the codes before presence thresholds: build the encoder with "
            "encode.presence_thresholds: none")
    features: list[np.ndarray] = []
    values: list[np.ndarray] = []

    def keep(ids: torch.Tensor, vals: torch.Tensor) -> None:
        features.append(ids.to(torch.int32).cpu().numpy())
        values.append(vals.float().cpu().numpy())

    codes: dict[TextField, SparseCodes] = {}
    for field, items in texts.items():
        parts = []
        for start in range(0, len(items), CHUNK_DOCS):
            docs = encoder.reader.tokenize(items[start : start + CHUNK_DOCS], field)
            parts.append(encoder.encode_docs(docs, on_tokens=keep))
            logger.info("calibration corpus: %d/%d %ss encoded", min(start + CHUNK_DOCS,
                        len(items)), len(items), field)
        codes[field] = SparseCodes.concat(parts)
    return CorpusActivations(
        codes=codes,
        features=np.concatenate(features) if features else np.zeros(0, np.int32),
        values=np.concatenate(values) if values else np.zeros(0, np.float32),
    )


def feature_quantiles(features: np.ndarray, values: np.ndarray, d_sae: int,
                      quantile: float = DEFAULT_QUANTILE,
                      min_count: int = DEFAULT_MIN_COUNT) -> np.ndarray:
    """Per feature, the ``quantile`` of its values (the max below ``min_count`` of them); NaN
    for a feature without any. Values must be > 0."""
    # One sort of (feature, value) keys: a positive float32's bits order like its value.
    key = (np.asarray(features).astype(np.uint64) << np.uint64(32)) | (
        np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64))
    key.sort()
    ordered = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32).astype(np.float64)
    counts = np.bincount(np.asarray(features), minlength=d_sae)[:d_sae]
    starts = np.zeros(d_sae, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    seen = counts > 0
    n = counts[seen]
    pos = np.where(n < min_count, n - 1, (n - 1) * quantile)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    low, high = ordered[starts[seen] + lo], ordered[starts[seen] + hi]
    q = np.full(d_sae, np.nan)
    q[seen] = low + (high - low) * (pos - lo)
    return q


def median_present(codes: SparseCodes, thresholds: np.ndarray) -> float:
    """Median number of entries ``>= thresholds[feature]`` over the documents with tokens."""
    return float(np.median(present_counts(codes, thresholds)))


def present_counts(codes: SparseCodes, thresholds: np.ndarray | None = None) -> np.ndarray:
    """Present features per document with tokens (all entries when ``thresholds`` is None)."""
    rows = np.repeat(np.arange(len(codes)), np.diff(codes.indptr))
    if thresholds is not None:
        rows = rows[codes.values.astype(np.float32) >= thresholds[codes.indices]]
    return np.bincount(rows, minlength=len(codes))[codes.n_tokens > 0]


def fit_rho(codes: SparseCodes, q: np.ndarray, target: float) -> float:
    """The global ``rho`` for which the median present count of ``codes`` under ``rho * q`` is
    ``target`` (see the module docstring)."""
    if not np.any(codes.n_tokens > 0):
        raise PresenceThresholdsError("the calibration corpus has no text with tokens")
    top = float(np.max(codes.values.astype(np.float64) / q[codes.indices], initial=1.0)) * 2.0

    def median_at(rho: float) -> float:
        return median_present(codes, (rho * q).astype(np.float32))

    unfiltered = median_at(0.0)
    if unfiltered <= target:
        raise PresenceThresholdsError(
            f"the corpus documents have a median of {unfiltered:g} features without presence "
            f"thresholds, not more than the target {target:g}: ask for fewer (--target-present)")

    def smallest(reaches: Callable[[float], bool]) -> float:
        lo, hi = 0.0, top
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
        return hi

    at_most = smallest(lambda rho: median_at(rho) <= target)
    if median_at(at_most) != target:  # the median jumps over the target: the nearest below
        return at_most
    below = smallest(lambda rho: median_at(rho) < target)
    return (at_most + below) / 2


def fit_thresholds(data: CorpusActivations, d_sae: int, target: float = DEFAULT_TARGET,
                   quantile: float = DEFAULT_QUANTILE, min_count: int = DEFAULT_MIN_COUNT,
                   corpus: str = "", sae_id: str = "", max_tokens_per_text: int | None = None,
                   fit_fields: Sequence[TextField] | None = None) -> PresenceThresholds:
    """Thresholds by the module's rule from activations already read; the median is taken
    over the documents of ``fit_fields`` (default: all), the quantiles over every token."""
    q = feature_quantiles(data.features, data.values, d_sae, quantile, min_count)
    unseen = np.isnan(q)
    if unseen.all():
        raise PresenceThresholdsError("no feature was ever active on the calibration corpus")
    q[unseen] = np.median(q[~unseen])
    fields = list(fit_fields or data.codes)
    codes = data.all_codes(fields)
    rho = fit_rho(codes, q, target)
    vector = PresenceThresholds(rho * q).values  # rounded as stored, then measured
    info = PresenceInfo(
        rule=RULE, quantile=quantile, min_count=min_count, rho=float(f"{rho:.6g}"),
        corpus=corpus, documents=int(np.sum(codes.n_tokens > 0)),
        max_tokens_per_text=max_tokens_per_text, target_present=target,
        median_present=median_present(codes, vector), unseen_features=int(unseen.sum()),
        sae_id=sae_id, fit_fields=tuple(fields))
    return PresenceThresholds(vector, info)


def calibrate(encoder: SAEEncoder, texts: Mapping[TextField, Sequence[str]],
              target: float = DEFAULT_TARGET, quantile: float = DEFAULT_QUANTILE,
              min_count: int = DEFAULT_MIN_COUNT, corpus: str = "",
              fit_fields: Sequence[TextField] | None = None) -> Calibration:
    """Read ``texts`` with ``encoder`` (built without presence thresholds) and fit them."""
    data = read_corpus(encoder, texts)
    thresholds = fit_thresholds(data, encoder.d_sae, target, quantile, min_count, corpus,
                                encoder.describe().sae, encoder.reader.text.max_tokens_per_text,
                                fit_fields)
    return Calibration(thresholds, data)


def present_summary(counts: np.ndarray) -> dict[str, float]:
    """Median, mean, 10th and 90th percentile of present features per document."""
    if len(counts) == 0:
        return {"documents": 0}
    p10, median, p90 = np.percentile(counts, [10, 50, 90])
    return {"documents": len(counts), "median": round(float(median), 1),
            "mean": round(float(np.mean(counts)), 1), "p10": round(float(p10), 1),
            "p90": round(float(p90), 1)}


def sample_corpus() -> tuple[list[LLMEvent], str]:
    """The default reference corpus: the shipped demo sample's models but
    :data:`SAMPLE_EXCLUDED`, and its description."""
    models = [m for m in alpaca_models(SAMPLE_DIR) if m not in SAMPLE_EXCLUDED]
    events = [e for m in models for e in alpaca_events(m, root=SAMPLE_DIR)]
    return events, f"saewatch demo sample (AlpacaEval {', '.join(models)})"


def run_calibrate_thresholds(settings: EncodeSettings, events: Iterable[LLMEvent], corpus: str,
                             target: float, out: Path | None, sae_dir: Path | None = None,
                             quantile: float = DEFAULT_QUANTILE,
                             fit_fields: Sequence[TextField] | None = None) -> dict[str, object]:
    """What ``saewatch calibrate-thresholds`` does: calibrate, write the file (default: beside
    the SAE), and say what a document keeps per field without and with the thresholds."""
    update: dict[str, object] = {"presence_thresholds": "none"}
    if sae_dir is not None:
        update["sae"] = SaeRef(path=sae_dir)
    encoder = SAEEncoder.from_settings(settings.model_copy(update=update))
    if out is None:
        out = _sae_folder(settings, sae_dir) / PRESENCE_FILE
    listed = list(events)
    texts = {f: [e.text(f) for e in listed] for f in TEXT_FIELDS}
    result = calibrate(encoder, texts, target, quantile, corpus=corpus, fit_fields=fit_fields)
    thresholds = result.thresholds
    thresholds.save(out)
    present = {
        f: {"without": present_summary(present_counts(codes)),
            "with": present_summary(present_counts(codes, thresholds.values))}
        for f, codes in result.corpus.codes.items()
    }
    return {"output": str(out), "digest": thresholds.digest, "events": len(listed),
            "info": thresholds.info.model_dump(), "present_per_document": present}


def _sae_folder(settings: EncodeSettings, sae_dir: Path | None) -> Path:
    """Where ``encode.presence_thresholds: auto`` looks for the file of this SAE."""
    folder = sae_dir or sae_folder(settings)
    if folder is None:
        raise PresenceThresholdsError("the SAE comes from the hub and has no folder to write "
                                      "the thresholds beside: give --out FILE and set "
                                      "encode.presence_thresholds to it")
    return folder


__all__ = ["Calibration", "CorpusActivations", "calibrate", "feature_quantiles", "fit_rho",
           "fit_thresholds", "present_counts", "present_summary", "read_corpus",
           "run_calibrate_thresholds", "sample_corpus"]
