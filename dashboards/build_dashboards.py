#!/usr/bin/env python3
"""Generate saewatch's Grafana dashboards (``dashboards/*.json``) from this one file.

    python dashboards/build_dashboards.py          # rewrite the JSON files
    python dashboards/build_dashboards.py --check  # exit 1 if they are out of date

Stable uids, ``id: null``, and every panel's data source is ``${datasource}``, a data-source
variable whose default is the uid ``prometheus`` (the provisioned data source). Needs only the
standard library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from behaviours_board import behaviours
from grafana_model import CMP, Panel, dashboard, panel, row, stat, target, variable

HERE = Path(__file__).resolve().parent
RANK_LABELS = "model_id, field, baseline, candidate, kind, direction, rank"
CMP_LEGEND = "{{model_id}} {{field}} {{baseline}} → {{candidate}} ({{kind}})"


def _behaviour_panels() -> list[Panel]:
    drift_thresholds = [(None, "green"), (1, "red")]
    return [
        row("Behaviour", 0),
        stat(
            "Comparisons drifting",
            "sum(saewatch:comparison_drift_detected:max) or vector(0)",
            (0, 1, 4, 4),
            thresholds=drift_thresholds,
        ),
        stat("Events processed / s", "sum(saewatch:events_processed:rate5m)", (4, 1, 4, 4), "ops"),
        stat(
            "Dead-lettered share",
            "sum(saewatch:events_invalid:ratio_rate5m)",
            (8, 1, 4, 4),
            "percentunit",
            [(None, "green"), (0.05, "red")],
        ),
        stat(
            "Consumer lag",
            "sum(saewatch_consumer_lag_messages)",
            (12, 1, 4, 4),
            "short",
            [(None, "green"), (10000, "orange")],
        ),
        stat(
            "Last snapshot age",
            "max(saewatch_last_snapshot_age_seconds)",
            (16, 1, 4, 4),
            "s",
            [(None, "green"), (600, "red")],
        ),
        stat(
            "Report age",
            "time() - max(saewatch_report_generated_timestamp_seconds)",
            (20, 1, 4, 4),
            "s",
            [(None, "green"), (300, "red")],
        ),
        panel(
            "timeseries",
            "Drift score per comparison",
            [target("saewatch:comparison_drift_score:max", CMP_LEGEND)],
            (0, 5, 12, 9),
            description="Calibrated: about 0 when nothing changed, grows with real change.",
        ),
        panel(
            "timeseries",
            "Significant features per comparison",
            [
                target(
                    "max by (model_id, field, baseline, candidate, kind) "
                    "(saewatch_comparison_significant_features)",
                    CMP_LEGEND,
                )
            ],
            (12, 5, 12, 9),
        ),
        panel(
            "table",
            "Verdicts",
            [
                target(
                    "max by (model_id, field, baseline, candidate, kind, verdict) "
                    "(saewatch_comparison_verdict) == 1",
                    table=True,
                )
            ],
            (0, 14, 24, 6),
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
            ],
        ),
    ]


def _pipeline_panels() -> list[Panel]:
    return [
        row("Pipeline", 20),
        panel(
            "timeseries",
            "Texts and tokens encoded / s",
            [
                target("saewatch:texts_processed:rate5m", "texts {{field}}"),
                target("saewatch:tokens_processed:rate5m", "tokens {{field}}", "B"),
            ],
            (0, 21, 8, 8),
            "ops",
        ),
        panel(
            "timeseries",
            "Encode latency per batch",
            [
                target("saewatch:encode_duration_seconds:p95_5m", "p95 {{job}}"),
                target(
                    "histogram_quantile(0.5, sum by (job, le) "
                    "(rate(saewatch_encode_duration_seconds_bucket[5m])))",
                    "p50 {{job}}",
                    "B",
                ),
            ],
            (8, 21, 8, 8),
            "s",
        ),
        panel(
            "timeseries",
            "Documents per batch (mean)",
            [
                target(
                    "sum by (job) (rate(saewatch_encode_batch_size_sum[5m])) / "
                    "sum by (job) (rate(saewatch_encode_batch_size_count[5m]))",
                    "{{job}}",
                )
            ],
            (16, 21, 8, 8),
        ),
        panel(
            "timeseries",
            "Consumer lag per partition",
            [target("saewatch_consumer_lag_messages", "{{topic}}[{{partition}}]")],
            (0, 29, 8, 8),
        ),
        panel(
            "timeseries",
            "Dead-lettered events / s by reason",
            [target("saewatch:events_invalid:rate5m", "{{reason}}")],
            (8, 29, 8, 8),
            "ops",
        ),
        panel(
            "timeseries",
            "Errors and truncations / s",
            [
                target(
                    "sum by (stage) (rate(saewatch_processing_errors_total[5m]))",
                    "errors {{stage}}",
                ),
                target(
                    "sum by (field, limit) (rate(saewatch_texts_truncated_total[5m]))",
                    "truncated {{field}} ({{limit}})",
                    "B",
                ),
            ],
            (16, 29, 8, 8),
            "ops",
        ),
    ]


def _model_panels() -> list[Panel]:
    return [
        row("Model and SAE", 37),
        panel(
            "table",
            "Encoder",
            [target("saewatch_model_info", table=True)],
            (0, 38, 12, 5),
            transformations=[
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}},
                }
            ],
        ),
        panel(
            "timeseries",
            "SAE sanity",
            [
                target("saewatch_sae_variance_explained_ratio", "variance explained {{instance}}"),
                target("saewatch_sae_mean_l0", "mean L0 {{instance}}", "B"),
            ],
            (12, 38, 6, 8),
        ),
        panel(
            "timeseries",
            "GPU memory",
            [
                target("saewatch_gpu_memory_allocated_bytes", "allocated {{device}}"),
                target("saewatch_gpu_memory_reserved_bytes", "reserved {{device}}", "B"),
            ],
            (18, 38, 6, 8),
            "bytes",
            description="Only exported when encoding on a GPU.",
        ),
    ]


def overview() -> dict[str, Any]:
    panels = [*_behaviour_panels(), *_pipeline_panels(), *_model_panels()]
    return dashboard(
        "saewatch-overview",
        "saewatch · overview",
        panels,
        [],
        "Behavioural drift of deployed LLMs and the health of the saewatch pipeline.",
    )


def _feature_table(direction: str, pos: tuple[int, int, int, int]) -> Panel:
    sel = f'{CMP}, direction="{direction}"'
    # Aggregating by the rank labels first keeps one row per rank even when several aggregator
    # replicas export the same comparison; the join adds the feature id and label from _info.
    info = f"max by ({RANK_LABELS}, feature, label) (saewatch_top_feature_info{{{sel}}})"

    def joined(metric: str, extra: str = "") -> str:
        left = f"max by ({RANK_LABELS}) ({metric}{{{sel}{extra}}})"
        return f"{left} * on ({RANK_LABELS}) group_left (feature, label) {info}"

    targets = [
        target(joined("saewatch_top_feature_log_odds_ratio"), table=True),
        target(
            joined("saewatch_top_feature_frequency_ratio", ', side="baseline"'), ref="B", table=True
        ),
        target(
            joined("saewatch_top_feature_frequency_ratio", ', side="candidate"'),
            ref="C",
            table=True,
        ),
        target(joined("saewatch_top_feature_q_value"), ref="D", table=True),
    ]
    keep = {
        "rank": 0,
        "feature": 1,
        "label": 2,
        "Value #B": 3,
        "Value #C": 4,
        "Value #A": 5,
        "Value #D": 6,
    }
    names = {
        "Value #A": "log-odds",
        "Value #B": "freq $baseline",
        "Value #C": "freq $candidate",
        "Value #D": "q",
    }
    title = "More frequent in $candidate" if direction == "up" else "Less frequent in $candidate"
    p = panel("table", title, targets, pos)
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "indexByName": keep,
                "renameByName": names,
                "excludeByName": {
                    k: True
                    for k in (
                        "Time",
                        "model_id",
                        "field",
                        "baseline",
                        "candidate",
                        "kind",
                        "direction",
                        "side",
                        "instance",
                        "job",
                        "__name__",
                    )
                },
            },
        },
        {
            "id": "convertFieldType",
            "options": {"conversions": [{"targetField": "rank", "destinationType": "number"}]},
        },
        {"id": "sortBy", "options": {"sort": [{"field": "rank"}]}},
    ]
    p["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byRegexp", "options": "^freq.*"},
            "properties": [
                {"id": "unit", "value": "percentunit"},
                {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                {"id": "min", "value": 0},
                {"id": "max", "value": 1},
            ],
        },
    ]
    return p


def comparison() -> dict[str, Any]:
    one = f"max(saewatch_comparison_drift_score{{{CMP}}})"
    panels = [
        stat("Drift score", one, (0, 0, 4, 4), thresholds=[(None, "green"), (1, "orange")]),
        stat(
            "Drift detected",
            f"max(saewatch_comparison_drift_detected{{{CMP}}})",
            (4, 0, 4, 4),
            thresholds=[(None, "green"), (1, "red")],
        ),
        stat(
            "Significant features",
            f"max(saewatch_comparison_significant_features{{{CMP}}})",
            (8, 0, 4, 4),
        ),
        stat("JS divergence", f"max(saewatch_comparison_js_divergence{{{CMP}}})", (12, 0, 4, 4)),
        stat(
            "Documents · $baseline",
            f'max(saewatch_comparison_documents{{{CMP}, side="baseline"}})',
            (16, 0, 4, 4),
        ),
        stat(
            "Documents · $candidate",
            f'max(saewatch_comparison_documents{{{CMP}, side="candidate"}})',
            (20, 0, 4, 4),
        ),
        panel("timeseries", "Drift score over time", [target(one, "drift score")], (0, 4, 12, 8)),
        panel(
            "timeseries",
            "Documents per version / s",
            [
                target(
                    "sum by (model_version) (rate(saewatch_version_documents_total"
                    '{model_id="$model_id", field="$field", model_version=~"$baseline|$candidate"}[5m]))',
                    "{{model_version}}",
                )
            ],
            (12, 4, 12, 8),
            "ops",
        ),
        _feature_table("up", (0, 12, 12, 12)),
        _feature_table("down", (12, 12, 12, 12)),
        panel(
            "bargauge",
            "Cluster shares · $baseline vs $candidate",
            [
                target(
                    "max by (model_version, cluster) (saewatch_cluster_share_ratio"
                    '{model_id="$model_id", model_version=~"$baseline|$candidate"})',
                    "{{model_version}} · cluster {{cluster}}",
                )
            ],
            (0, 24, 24, 10),
            "percentunit",
            options={
                "displayMode": "basic",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"]},
            },
        ),
    ]
    base = "saewatch_comparison_drift_score"
    variables = [
        variable("model_id", f"label_values({base}, model_id)", "Model"),
        variable("field", f'label_values({base}{{model_id="$model_id"}}, field)', "Field"),
        variable(
            "kind", f'label_values({base}{{model_id="$model_id", field="$field"}}, kind)', "Kind"
        ),
        variable(
            "baseline",
            f'label_values({base}{{model_id="$model_id", field="$field", kind="$kind"}}, baseline)',
            "Baseline",
        ),
        variable(
            "candidate",
            f'label_values({base}{{model_id="$model_id", field="$field", '
            'kind="$kind", baseline="$baseline"}, candidate)',
            "Candidate",
        ),
    ]
    return dashboard(
        "saewatch-comparison",
        "saewatch · comparison drill-down",
        panels,
        variables,
        "One comparison: drift over time and the top-K features that changed, "
        "with their labels (joined from saewatch_top_feature_info).",
    )


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    boards = {"saewatch-overview.json": overview(), "saewatch-comparison.json": comparison(),
              "saewatch-behaviours.json": behaviours()}
    return {name: json.dumps(board, indent=2) + "\n" for name, board in boards.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run dashboards/build_dashboards.py\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
