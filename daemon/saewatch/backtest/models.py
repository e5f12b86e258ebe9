"""What ``saewatch backtest`` writes: typed, frozen, and the source of docs/backtest.schema.json.

Trimmed copies of :class:`~saewatch.models.ComparisonResult`: an operator tuning ``diff.*``
reads verdicts, sizes, the headline and the top features, not every delta's examples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from saewatch.models import ComparisonResult, FeatureDelta, Verdict

# Features kept per direction in a look's or the final summary: enough to recognise a change.
TOP_FEATURES = 5


class FeatureBrief(BaseModel):
    """One feature that moved: id, label and its document frequency on both sides.

    >>> FeatureBrief(feature=3, label="lists", freq_baseline=0.5, freq_candidate=0.1,
    ...              q_value=0.001).feature
    3
    """

    model_config = ConfigDict(frozen=True)

    feature: int
    label: str | None = None
    freq_baseline: float
    freq_candidate: float
    q_value: float

    @classmethod
    def of(cls, delta: FeatureDelta) -> FeatureBrief:
        return cls(feature=delta.feature, label=delta.label, freq_baseline=delta.freq_baseline,
                   freq_candidate=delta.freq_candidate, q_value=delta.q_value)


class ComparisonBrief(BaseModel):
    """One comparison of one look, trimmed: what was compared, how big, and the verdict.

    >>> ComparisonBrief(slug="m/response/a..b", kind="latest", n_baseline=100,
    ...                 n_candidate=100, verdict="no_drift").verdict
    'no_drift'
    """

    model_config = ConfigDict(frozen=True)

    slug: str = Field(description="model_id/field/baseline..candidate")
    kind: str = Field(description="versions, latest or window (see diff/plan.py)")
    n_baseline: int
    n_candidate: int
    verdict: Verdict
    message: str = ""
    drift_score: float = 0.0
    sequential_alarm: bool = False
    n_significant: int = 0
    headline: str | None = Field(default=None, description="strongest moved text descriptor")

    @classmethod
    def of(cls, result: ComparisonResult) -> ComparisonBrief:
        return cls(slug=result.key.slug, kind=result.key.kind, n_baseline=result.n_baseline,
                   n_candidate=result.n_candidate, verdict=result.verdict,
                   message=result.message, drift_score=result.drift_score,
                   sequential_alarm=result.sequential_alarm,
                   n_significant=result.n_significant, headline=result.headline)


class ComparisonFindings(ComparisonBrief):
    """A comparison of the final look: the brief plus what moved (descriptors, top features).

    >>> ComparisonFindings(slug="m/response/a..b", kind="latest", n_baseline=1,
    ...                    n_candidate=1, verdict="insufficient_data").moved_descriptors
    ()
    """

    divergence: float = 0.0
    moved_descriptors: tuple[str, ...] = Field(default=(), description="in words, largest first")
    top_up: tuple[FeatureBrief, ...] = ()
    top_down: tuple[FeatureBrief, ...] = ()

    @classmethod
    def of(cls, result: ComparisonResult) -> ComparisonFindings:
        brief = ComparisonBrief.of(result).model_dump()
        return cls(**brief, divergence=result.divergence,
                   moved_descriptors=tuple(d.text for d in result.moved_descriptors),
                   top_up=tuple(FeatureBrief.of(d) for d in result.top_up[:TOP_FEATURES]),
                   top_down=tuple(FeatureBrief.of(d) for d in result.top_down[:TOP_FEATURES]))


class Look(BaseModel):
    """One look at the replayed stream: the drift report as the daemon would have built it.

    ``verdict`` is the worst of the comparisons' (drift, then no_drift, then insufficient_data)
    and ``headline`` the first drifting comparison's.

    >>> from datetime import UTC, datetime
    >>> Look(index=0, events_read=10, at=datetime(2026, 1, 1, tzinfo=UTC),
    ...      sides={"m/a/response": 5}, verdict="insufficient_data").final
    False
    """

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="0, 1, ... in stream order")
    events_read: int = Field(description="valid events folded in before this look")
    at: datetime = Field(description="the clock of the look: the latest event timestamp")
    sides: dict[str, int] = Field(
        description="documents per side of the planned comparisons, 'model_id/version/field'")
    verdict: Verdict
    headline: str | None = None
    final: bool = Field(default=False, description="the look at the end of the file")
    comparisons: tuple[ComparisonBrief, ...] = ()


class BacktestStats(BaseModel):
    """Counts and timings of the run; ``texts_encoded`` is 0 when the cache had everything.

    >>> BacktestStats(events_valid=2, texts_encoded=0, texts_cached=4).texts_cached
    4
    """

    model_config = ConfigDict(frozen=True)

    lines_read: int = 0
    events_valid: int = 0
    events_invalid: int = 0
    invalid_by_reason: dict[str, int] = Field(default_factory=dict)
    texts_encoded: int = Field(default=0, description="texts the model encoded in this run")
    texts_cached: int = Field(default=0, description="texts whose codes came from the cache")
    cache_dir: str | None = Field(default=None, description="null with --no-cache")
    encode_seconds: float = 0.0
    total_seconds: float = 0.0


class BacktestResult(BaseModel):
    """The whole output of ``saewatch backtest``.

    >>> BacktestResult(file="e.jsonl", every=50, encoder_id="x", looks=(),
    ...                stats=BacktestStats()).first_drift is None
    True
    """

    model_config = ConfigDict(frozen=True)

    file: str
    every: int = Field(description="a look whenever every side of a comparison grew by this")
    encoder_id: str
    looks: tuple[Look, ...]
    first_drift: Look | None = Field(default=None, description="first look whose verdict is drift")
    final: tuple[ComparisonFindings, ...] = Field(
        default=(), description="the last look's comparisons, with what moved")
    stats: BacktestStats


def backtest_schema() -> dict[str, object]:
    """The JSON Schema committed as docs/backtest.schema.json.

    >>> backtest_schema()["title"]
    'BacktestResult'
    """
    schema: dict[str, object] = _without_doctests(BacktestResult.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://saewatch.dev/schemas/backtest.schema.json"
    return schema


def _without_doctests(node: Any) -> Any:
    """The schema with each description cut before its doctest (the class docstrings')."""
    if isinstance(node, dict):
        return {k: (v.split("\n\n>>>")[0] if k == "description" and isinstance(v, str)
                    else _without_doctests(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_doctests(v) for v in node]
    return node


__all__ = ["FeatureBrief", "ComparisonBrief", "ComparisonFindings", "Look", "BacktestStats",
           "BacktestResult", "backtest_schema"]
