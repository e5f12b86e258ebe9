"""Behaviour shares and version tests in the report, and their Prometheus families."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from prometheus_client import CollectorRegistry

from saewatch.config import DiffSettings, StateSettings
from saewatch.diff.behaviours import behaviour_summaries, wilson
from saewatch.diff.report import build_report
from saewatch.export.base import ReportHolder
from saewatch.export.behaviours import BehaviourCollector
from saewatch.models import VersionCount
from saewatch.models.behaviours import BehaviourCount, BehaviourDefinition
from saewatch.state.monitor import MonitorState
from saewatch.state.testing import make_batch
from saewatch.views import StateView

T = datetime(2026, 11, 20, tzinfo=UTC)
D = BehaviourDefinition(name="b", examples=("x",), features=(7,), weights=(2.0,), bias=-1.0,
                        threshold=0.0, encoder_id="test-encoder")


def view_of(flagged: dict[str, tuple[int, int]]) -> StateView:
    return StateView(
        taken_at=T,
        versions=[VersionCount(model_id="m", model_version=v, field="response", documents=n)
                  for v, (n, _) in flagged.items()],
        behaviours=[D],
        behaviour_counts=[BehaviourCount(behaviour="b", model_id="m", model_version=v,
                                         field="response", documents=n, flagged=k)
                          for v, (n, k) in flagged.items()])


def test_the_wilson_interval_covers_the_true_share_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    hits = [(lo <= 0.05 <= hi) for lo, hi in (wilson(int(k), 300)
                                              for k in rng.binomial(300, 0.05, 2_000))]
    assert 0.93 <= float(np.mean(hits)) <= 0.98


def test_a_new_behaviour_at_five_percent_alarms_and_a_a_streams_do_not() -> None:
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(200):  # A/A: both at 2%, looked at every 20 events up to 400 per side
        a, b = rng.random(400) < 0.02, rng.random(400) < 0.02
        for n in range(20, 401, 20):
            s = behaviour_summaries(view_of({"v1": (n, int(a[:n].sum())),
                                             "v2": (n, int(b[:n].sum()))}), DiffSettings())
            if s[0].comparisons[0].alarm:
                alarms += 1
                break
    assert alarms <= 4  # alpha = 0.01 over every look: ~2 of 200 at most by chance
    # a behaviour new in v2 at 5% (v1: 0.3% flagged by mistake) alarms within 300 per side
    s = behaviour_summaries(view_of({"v1": (300, 1), "v2": (300, 16)}), DiffSettings())[0]
    c = s.comparisons[0]
    assert (c.baseline, c.candidate, c.alarm) == ("v1", "v2", True)
    assert round(c.delta, 3) == 0.05
    s = behaviour_summaries(view_of({"v1": (300, 1), "v2": (300, 4)}), DiffSettings())[0]
    assert not s.comparisons[0].alarm  # one point: not enough evidence yet


def test_state_to_report_to_metrics() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=500, cluster_warmup_events=0))
    state.update(make_batch([[1]] * 150 + [[7]] * 3, 16, version="v1"))
    state.define_behaviour(D)
    state.update(make_batch([[1]] * 120 + [[7]] * 30, 16, version="v2", start=200))
    report = build_report(state.view(), DiffSettings(min_documents=10), labels={7: "pirate"})
    (summary,) = report.behaviours
    assert summary.feature_labels == ("pirate",)
    shares = {(x.model_version, x.window): x for x in summary.shares}
    assert shares[("v1", "all")].flagged == 3 and shares[("v2", "all")].share == 0.2
    holder = ReportHolder()
    holder.publish(report)
    registry = CollectorRegistry()
    registry.register(BehaviourCollector(holder))
    labels = {"behaviour": "b", "model_id": "m", "model_version": "v2"}
    assert registry.get_sample_value("saewatch_behaviour_share", labels) == 0.2
    assert registry.get_sample_value("saewatch_behaviour_events_scored", labels) == 150.0
    low = registry.get_sample_value("saewatch_behaviour_share_ci_low", labels)
    assert low is not None and 0.14 < low < 0.2
    change = {"behaviour": "b", "model_id": "m", "baseline": "v1", "candidate": "v2"}
    assert registry.get_sample_value("saewatch_behaviour_alarm", change) == 1.0
    assert registry.get_sample_value("saewatch_behaviour_share_change", change) == (
        0.2 - 3 / 153)
