"""Per-feature presence thresholds: a feature is *present* in a document when its max-pooled
activation reaches that feature's own threshold.

A scalar threshold cannot serve a whole dictionary: with the shipped TopK SAE half of the 4,096
features have some token above 0 in every long response, so any change of length moves
thousands of features. Each feature's threshold ``t_j`` is calibrated instead on a reference
corpus (``saewatch calibrate-thresholds``, :mod:`saewatch.training.calibration`) so that a
typical document keeps tens of features. The kept values stay the max-pooled activations.

The thresholds travel as ``presence_thresholds.json`` beside the SAE (``encode.presence_thresholds:
auto``); values are stored to 6 significant digits, and the vector is rounded to them on
construction, so a saved file loads back bit-identical and its :attr:`~PresenceThresholds.digest`
(part of the encoder id) is stable.

>>> t = PresenceThresholds(np.array([1.0, 0.5, 2.0], np.float32))
>>> codes = SparseCodes.from_rows([[0, 1, 2], [2]], [[0.9, 0.5, 3.0], [1.0]], n_tokens=[5, 2])
>>> kept = t.apply(codes)
>>> kept.indptr.tolist(), kept.indices.tolist(), kept.values.tolist(), kept.n_tokens.tolist()
([0, 2, 2], [1, 2], [0.5, 3.0], [5, 2])
>>> len(t.digest), t.d_sae
(8, 3)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from saewatch.encode.exceptions import PresenceThresholdsError
from saewatch.models import SparseCodes

logger = logging.getLogger(__name__)

PRESENCE_FILE = "presence_thresholds.json"
SIGNIFICANT_DIGITS = 6  # float32 holds ~7.2 digits, so rounding to 6 survives a round trip


class PresenceInfo(BaseModel):
    """How a thresholds vector was calibrated (kept in the file, shown by the command).

    >>> PresenceInfo(rho=0.8, target_present=48.0).rule
    'manual'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = "manual"
    quantile: float | None = None  # of each feature's nonzero token activations
    min_count: int | None = None  # fewer nonzero activations than this: the max instead
    rho: float | None = None  # t_j = rho * q_j
    corpus: str = ""
    documents: int = 0
    max_tokens_per_text: int | None = None
    target_present: float | None = None
    median_present: float | None = None  # measured on the corpus with these thresholds
    unseen_features: int = 0  # never active on the corpus: given the median threshold
    sae_id: str = ""
    fit_fields: tuple[str, ...] = ()  # whose documents the median present count was taken over


class _ThresholdsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    d_sae: int
    info: PresenceInfo
    thresholds: list[float]


@dataclass(frozen=True)
class PresenceThresholds:
    """A float32 threshold per SAE feature, with how it was calibrated.

    Parameters
    ----------
    values
        ``[d_sae]`` thresholds, finite and >= 0 (rounded to 6 significant digits here).
    info
        Calibration metadata.

    >>> PresenceThresholds(np.array([0.1234567, 2.0])).values.tolist()[0]  # doctest: +ELLIPSIS
    0.12345...
    """

    values: np.ndarray
    info: PresenceInfo = field(default_factory=PresenceInfo)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1 or len(values) == 0:
            raise PresenceThresholdsError(
                f"presence thresholds must be one non-empty vector (one per SAE feature), "
                f"got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise PresenceThresholdsError(
                "presence thresholds must be finite and >= 0; recalibrate them with "
                "`saewatch calibrate-thresholds`")
        rounded = np.array([float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in values.tolist()],
                           dtype=np.float32)
        rounded.setflags(write=False)
        object.__setattr__(self, "values", rounded)

    @property
    def d_sae(self) -> int:
        return len(self.values)

    @property
    def digest(self) -> str:
        """8 hex digits of SHA-256 over the little-endian float32 vector (in the encoder id)."""
        return hashlib.sha256(self.values.astype("<f4").tobytes()).hexdigest()[:8]

    def check(self, d_sae: int, source: str = "presence thresholds") -> None:
        """Raise unless there is one threshold per feature of an SAE of width ``d_sae``."""
        if self.d_sae != d_sae:
            raise PresenceThresholdsError(
                f"{source} hold {self.d_sae} thresholds but the SAE has {d_sae} features: they "
                "were calibrated for another SAE; run `saewatch calibrate-thresholds` for this "
                "one, or set encode.presence_thresholds: none")

    def apply(self, codes: SparseCodes) -> SparseCodes:
        """Only the entries of ``codes`` whose value reaches their feature's threshold."""
        return filter_codes(codes, self.values)

    def save(self, path: Path) -> None:
        """Write the JSON file (parent folders created)."""
        # The shortest decimals of the rounded values: they parse back to the same float32.
        listed = [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in self.values.tolist()]
        data = _ThresholdsFile(d_sae=self.d_sae, info=self.info, thresholds=listed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data.model_dump_json(indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path, d_sae: int | None = None) -> PresenceThresholds:
        """Read a file written by :meth:`save`; with ``d_sae``, check its length too.

        Raises
        ------
        PresenceThresholdsError
            When the file is missing or malformed, or does not fit an SAE of ``d_sae``.
        """
        try:
            data = _ThresholdsFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise PresenceThresholdsError(
                f"cannot read presence thresholds {path}: {exc}; calibrate them with `saewatch "
                "calibrate-thresholds --out FILE` or set encode.presence_thresholds: none"
            ) from exc
        except (json.JSONDecodeError, ValidationError) as exc:
            raise PresenceThresholdsError(
                f"{path} is not a presence thresholds file ({exc}); write it again with "
                "`saewatch calibrate-thresholds`") from exc
        if len(data.thresholds) != data.d_sae:
            raise PresenceThresholdsError(
                f"{path} says d_sae {data.d_sae} but lists {len(data.thresholds)} thresholds; "
                "write it again with `saewatch calibrate-thresholds`")
        loaded = cls(np.asarray(data.thresholds, dtype=np.float64), data.info)
        if d_sae is not None:
            loaded.check(d_sae, str(path))
        return loaded


def filter_codes(codes: SparseCodes, thresholds: np.ndarray) -> SparseCodes:
    """Keep the entries ``values >= thresholds[indices]`` of every row (one vectorised pass).

    The comparison is in float32 of the stored float16 values, so the codes decide the same way
    wherever they are filtered (in the encoder, or post hoc on cached codes).

    >>> codes = SparseCodes.from_rows([[1, 3], [0]], [[0.5, 1.0], [2.0]])
    >>> filter_codes(codes, np.array([1.0, 1.0, 1.0, 1.0], np.float32)).indices.tolist()
    [3, 0]
    """
    if len(codes.indices) and int(codes.indices.max()) >= len(thresholds):
        raise PresenceThresholdsError(
            f"codes name feature {int(codes.indices.max())} but only {len(thresholds)} presence "
            "thresholds are given: they belong to another SAE")
    keep = codes.values.astype(np.float32) >= thresholds[codes.indices]
    rows = np.repeat(np.arange(len(codes)), np.diff(codes.indptr))
    indptr = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=len(codes)), out=indptr[1:])
    return SparseCodes(indptr=indptr, indices=codes.indices[keep], values=codes.values[keep],
                       n_tokens=codes.n_tokens, truncated=codes.truncated)


def resolve_presence(
    setting: Path | str, sae_directory: Path | None, d_sae: int
) -> PresenceThresholds | None:
    """The thresholds ``encode.presence_thresholds`` names, checked against the SAE's width.

    ``auto``: :data:`PRESENCE_FILE` beside the SAE when the SAE has a folder and the file is
    there, else none; ``none``: none; a path: that file, which must exist.

    >>> resolve_presence("auto", None, 4096) is None
    True
    """
    if setting == "none":
        return None
    if setting == "auto":
        if sae_directory is None or not (sae_directory / PRESENCE_FILE).is_file():
            return None
        path = sae_directory / PRESENCE_FILE
    else:
        path = Path(setting)
    loaded = PresenceThresholds.load(path, d_sae)
    logger.info("presence thresholds %s (%s, median %s present per document on %s)", path,
                loaded.digest, loaded.info.median_present, loaded.info.corpus or "?")
    return loaded


__all__ = ["PRESENCE_FILE", "PresenceInfo", "PresenceThresholds", "filter_codes",
           "resolve_presence"]
