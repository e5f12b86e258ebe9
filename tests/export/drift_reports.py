"""Hand-built, realistic drift reports for the export tests (data, not mocks).

The drifting report describes gpt4_1106_preview -> gpt4_1106_preview_verbose (the test data's
pair with a known, real behavioural change: longer, more structured answers) with snippets taken
from those models' real AlpacaEval outputs; the A/A report compares a version with itself.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import cache

from saewatch.datasets import read_alpaca
from saewatch.export.metrics import PipelineMetrics
from saewatch.models import (
    ClusterShare,
    ComparisonKey,
    ComparisonResult,
    DriftReport,
    FeatureDelta,
    Snippet,
    TextField,
    Theme,
    VersionCount,
)
from saewatch.models.behaviours import BehaviourComparison, BehaviourShare, BehaviourSummary

BASELINE = "gpt4_1106_preview"
CANDIDATE = "gpt4_1106_preview_verbose"
MODEL_ID = "support-bot"
AT = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)

# (feature, label, freq baseline, freq candidate) of a verbose rewrite: structure goes up,
# brevity markers go down.
UP = [
    (1412, "markdown bold section headings", 0.21, 0.58),
    (377, "numbered step-by-step lists", 0.34, 0.61),
    (2950, "'In summary' / concluding recap", 0.08, 0.31),
    (88, "nested bullet points", 0.12, 0.33),
    (3071, "caveats and considerations", 0.19, 0.36),
    (645, None, 0.05, 0.17),
    (2203, "examples introduced with 'For instance'", 0.11, 0.22),
    (914, "historical background", 0.09, 0.18),
    (1733, "<script>alert('label')</script> & friends", 0.04, 0.11),
    (402, "definitions of terms", 0.15, 0.24),
    (3999, "tables in markdown", 0.02, 0.07),
    (57, "second-person advice", 0.27, 0.35),
]
DOWN = [
    (1204, "one-sentence direct answers", 0.41, 0.12),
    (2711, "short code-only replies", 0.17, 0.06),
    (66, "yes/no openings", 0.22, 0.09),
    (3150, "terse factual lists", 0.29, 0.16),
    (508, "single-word answers", 0.06, 0.01),
]


@cache
def outputs(model: str) -> tuple[str, ...]:
    """The model's responses in instruction order (the test data holds the first 200)."""
    return tuple(row.output for row in read_alpaca(model))


def _snippets(model: str, start: int, n: int = 2) -> tuple[Snippet, ...]:
    texts = outputs(model)
    return tuple(
        Snippet(
            event_id=f"{model}-{i}",
            model_version=model,
            activation=round(3.5 - 0.4 * k, 2),
            text=texts[i][:280],
        )
        for k, i in enumerate(range(start, start + n))
    )


def _delta(
    rank: int, row: tuple[int, str | None, float, float], n_b: int, n_c: int
) -> FeatureDelta:
    feature, label, fb, fc = row
    lor = math.log((fc + 0.005) / (1 - fc + 0.005)) - math.log((fb + 0.005) / (1 - fb + 0.005))
    return FeatureDelta(
        feature=feature,
        label=label,
        count_baseline=round(fb * n_b),
        count_candidate=round(fc * n_c),
        freq_baseline=fb,
        freq_candidate=fc,
        log_odds_ratio=round(lor, 4),
        p_value=min(1.0, 1e-12 * 5**rank),
        q_value=min(1.0, 1e-10 * 6**rank),
        direction="up" if fc > fb else "down",
        # The same prompts answered by both versions, so the page shows them side by side.
        examples_baseline=_snippets(BASELINE, feature % 198),
        examples_candidate=_snippets(CANDIDATE, feature % 198),
    )


# Themes of the verbose rewrite: (members by effect, any-member shares baseline -> candidate).
THEMES = [
    ((1412, 377, 88), 0.38, 0.79),  # structure: headings, numbered and nested lists
    ((2950, 3071), 0.24, 0.52),  # recap and caveats
    ((645,), 0.05, 0.17),
    ((1204, 66), 0.48, 0.15),  # short direct answers
    ((2711,), 0.17, 0.06),
]


def _themes(deltas: tuple[FeatureDelta, ...]) -> tuple[Theme, ...]:
    by_feature = {d.feature: d for d in deltas}
    out = []
    for members, share_b, share_c in THEMES:
        lead = by_feature[members[0]]
        out.append(Theme(
            id=f"{lead.direction}-{lead.feature}", direction=lead.direction, features=members,
            labels=tuple(by_feature[f].label or "" for f in members if by_feature[f].label)[:3],
            effect=round(share_c - share_b, 4), share_baseline=share_b, share_candidate=share_c,
            effect_basis="any_member", leader_effect=lead.freq_candidate - lead.freq_baseline,
            q_value=lead.q_value, cohesion=None if len(members) == 1 else 0.55,
            examples_baseline=lead.examples_baseline[:1],
            examples_candidate=lead.examples_candidate[:1],
        ))
    return tuple(out)


def drift_result(field: TextField = "response", computed_at: datetime = AT) -> ComparisonResult:
    """The verbose rewrite, as the diff would report it: drift with many significant features."""
    n_b, n_c = 805, 805
    up = tuple(_delta(r, row, n_b, n_c) for r, row in enumerate(UP, 1))
    down = tuple(_delta(r, row, n_b, n_c) for r, row in enumerate(DOWN, 1))
    return ComparisonResult(
        key=ComparisonKey(model_id=MODEL_ID, field=field, baseline=BASELINE, candidate=CANDIDATE),
        n_baseline=n_b,
        n_candidate=n_c,
        verdict="drift",
        message="412 of 4096 features changed frequency (q < 0.05)",
        drift_score=7.85,
        divergence=0.0432,
        n_significant=412,
        sequential_alarm=True,
        top_up=up,
        top_down=down,
        themes=_themes(up + down),
        n_significant_themes=23,
        computed_at=computed_at,
    )


def aa_result(computed_at: datetime = AT) -> ComparisonResult:
    """A version against itself (two halves of one stream): no drift, nothing significant."""
    return ComparisonResult(
        key=ComparisonKey(
            model_id=MODEL_ID,
            field="response",
            baseline=BASELINE,
            candidate=BASELINE,
            kind="window",
        ),
        n_baseline=402,
        n_candidate=403,
        verdict="no_drift",
        message="no feature changed frequency (q < 0.05)",
        drift_score=0.12,
        divergence=0.0011,
        n_significant=0,
        computed_at=computed_at,
    )


def insufficient_result(computed_at: datetime = AT) -> ComparisonResult:
    """A new version with too few events for a verdict."""
    return ComparisonResult(
        key=ComparisonKey(
            model_id=MODEL_ID,
            field="response",
            baseline=CANDIDATE,
            candidate="2026-11-25-rc1",
            kind="latest",
        ),
        n_baseline=805,
        n_candidate=37,
        verdict="insufficient_data",
        message="candidate 2026-11-25-rc1 has 37 documents; at least 100 are needed",
        computed_at=computed_at,
    )


def versions() -> tuple[VersionCount, ...]:
    first = AT - timedelta(hours=2)
    return (
        VersionCount(
            model_id=MODEL_ID,
            model_version=BASELINE,
            field="response",
            documents=805,
            first_seen=first,
            last_seen=AT - timedelta(hours=1),
        ),
        VersionCount(
            model_id=MODEL_ID,
            model_version=CANDIDATE,
            field="response",
            documents=805,
            first_seen=AT - timedelta(hours=1),
            last_seen=AT,
        ),
        VersionCount(
            model_id=MODEL_ID,
            model_version="2026-11-25-rc1",
            field="response",
            documents=37,
            first_seen=AT - timedelta(minutes=5),
            last_seen=AT,
        ),
    )


def clusters(n: int = 20) -> tuple[ClusterShare, ...]:
    """``n`` clusters per version, shares decaying geometrically (sum to 1)."""
    out: list[ClusterShare] = []
    for version, decay in ((BASELINE, 0.7), (CANDIDATE, 0.8)):
        weights = [decay**c for c in range(n)]
        total = sum(weights)
        for c, w in enumerate(weights):
            out.append(
                ClusterShare(
                    cluster=c,
                    model_id=MODEL_ID,
                    model_version=version,
                    share=w / total,
                    documents=round(805 * w / total),
                    top_features=(1412 + c, 377),
                    top_labels=(f"topic {c}", "numbered step-by-step lists"),
                )
            )
    return tuple(out)


def drift_report(generated_at: datetime = AT) -> DriftReport:
    """Drift on responses, an A/A window comparison and a starved new version."""
    return DriftReport(
        generated_at=generated_at,
        comparisons=(
            drift_result(computed_at=generated_at),
            aa_result(generated_at),
            insufficient_result(generated_at),
        ),
        versions=versions(),
        clusters=clusters(),
        behaviours=(behaviour_summary(),),
    )


BEHAVIOUR = "apology"


def behaviour_summary() -> BehaviourSummary:
    """A watched behaviour that rose from 1% to 5% of responses, its test alarmed."""
    shares = tuple(
        BehaviourShare(model_id=MODEL_ID, model_version=v, window=w, documents=400, flagged=k,
                       share=k / 400, ci_low=max(0.0, k / 400 - 0.02), ci_high=k / 400 + 0.02)
        for v, k in ((BASELINE, 4), (CANDIDATE, 20)) for w in ("all", "1h"))
    return BehaviourSummary(
        name=BEHAVIOUR, field="response", examples=("I'm so sorry for the confusion.",),
        features=(17, 904), feature_labels=("apology", ""), threshold=0.5, shares=shares,
        comparisons=(BehaviourComparison(model_id=MODEL_ID, baseline=BASELINE,
                                         candidate=CANDIDATE, share_baseline=0.01,
                                         share_candidate=0.05, delta=0.04, log_evidence=9.5,
                                         alarm=True),))


def aa_report(generated_at: datetime = AT) -> DriftReport:
    """Only the A/A comparison: nothing should alert."""
    return DriftReport(
        generated_at=generated_at,
        comparisons=(aa_result(generated_at),),
        versions=versions()[:1],
        clusters=clusters()[:20],
    )


def exercise_pipeline(metrics: PipelineMetrics) -> None:
    """Update every operational instrument the way the app does after a few batches on a GPU."""
    metrics.events_consumed.inc(1_000)
    metrics.events_processed.inc(960)
    metrics.events_invalid.labels(reason="schema").inc(30)
    metrics.events_invalid.labels(reason="invalid_json").inc(10)
    metrics.texts_truncated.labels(field="response", limit="tokens").inc(4)
    for seconds in (2.1, 2.8, 3.4):
        metrics.observe_encode({"prompt": 64 * 40, "response": 64 * 210}, 64, seconds)
    metrics.snapshot_duration.observe(0.12)
    metrics.diff_duration.observe(0.31)
    metrics.partitions_assigned.set(2)
    metrics.set_consumer_lag("llm-events", {0: 120, 1: 75})
    metrics.snapshot_written(seconds=0.12)
    metrics.set_model(
        model="SmolLM2-135M-Instruct",
        sae="saewatch-default-topk",
        hook="blocks.15",
        device="cuda:0",
        precision="bf16",
        d_sae=4096,
        encoder_id="smollm2/15/topk-4096",
    )
    metrics.set_sae_sanity(variance_explained=0.83, mean_l0=32.0)
    metrics.set_gpu_memory("cuda:0", allocated_bytes=1_200_000_000, reserved_bytes=2_000_000_000)
    metrics.processing_errors.labels(stage="encode").inc()
