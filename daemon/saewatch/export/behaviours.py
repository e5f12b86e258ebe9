"""Prometheus families of the watched behaviours in the latest drift report.

Cardinality is bounded by construction: behaviours are configured (at most
:data:`~saewatch.models.behaviours.MAX_BEHAVIOURS`), never discovered, and each has one series
per version (and per configured window) and per version comparison. A scrape shows::

    # HELP saewatch_behaviour_share Share of events showing the behaviour (all events scored)
    # TYPE saewatch_behaviour_share gauge
    saewatch_behaviour_share{behaviour="apology",model_id="bot",model_version="v2"} 0.052
    # HELP saewatch_behaviour_alarm 1 when the always-valid test of the version change rejected
    # TYPE saewatch_behaviour_alarm gauge
    saewatch_behaviour_alarm{baseline="v1",behaviour="apology",candidate="v2",model_id="bot"} 1.0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from saewatch.export.base import ReportHolder
from saewatch.models.behaviours import MAX_BEHAVIOURS, BehaviourSummary

SHARE_LABELS = ["behaviour", "model_id", "model_version"]
WINDOW_LABELS = [*SHARE_LABELS, "window"]
CHANGE_LABELS = ["behaviour", "model_id", "baseline", "candidate"]


class BehaviourCollector(Collector):
    """Behaviour shares, their intervals and counts, and version tests of the latest report.

    >>> from datetime import UTC, datetime
    >>> from prometheus_client import CollectorRegistry
    >>> from saewatch.models import DriftReport
    >>> from saewatch.models.behaviours import BehaviourShare
    >>> holder = ReportHolder()
    >>> share = BehaviourShare(model_id="bot", model_version="v2", window="all", documents=200,
    ...                        flagged=10, share=0.05, ci_low=0.027, ci_high=0.09)
    >>> holder.publish(DriftReport(generated_at=datetime(2026, 11, 20, tzinfo=UTC), behaviours=(
    ...     BehaviourSummary(name="apology", field="response", examples=("Sorry",),
    ...                      features=(1,), threshold=0.0, shares=(share,)),)))
    >>> registry = CollectorRegistry()
    >>> registry.register(BehaviourCollector(holder))
    >>> labels = {"behaviour": "apology", "model_id": "bot", "model_version": "v2"}
    >>> registry.get_sample_value("saewatch_behaviour_share", labels)
    0.05
    >>> registry.get_sample_value("saewatch_behaviour_events_flagged", labels)
    10.0
    """

    def __init__(self, holder: ReportHolder) -> None:
        self.holder = holder

    def collect(self) -> Iterator[Metric]:
        report = self.holder.latest
        summaries = report.behaviours[:MAX_BEHAVIOURS] if report is not None else ()
        yield from _shares(summaries)
        yield from _changes(summaries)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families vary with the report; nothing to check at registration


def _shares(summaries: tuple[BehaviourSummary, ...]) -> Iterator[Metric]:
    share = GaugeMetricFamily("saewatch_behaviour_share", "Share of events showing the "
                              "behaviour (all events scored)", labels=SHARE_LABELS)
    low = GaugeMetricFamily("saewatch_behaviour_share_ci_low", "Lower end of the share's 95% "
                            "Wilson interval", labels=SHARE_LABELS)
    high = GaugeMetricFamily("saewatch_behaviour_share_ci_high", "Upper end of the share's 95% "
                             "Wilson interval", labels=SHARE_LABELS)
    scored = GaugeMetricFamily("saewatch_behaviour_events_scored", "Events scored for the "
                               "behaviour (since it was defined, ring events included)",
                               labels=SHARE_LABELS)
    flagged = GaugeMetricFamily("saewatch_behaviour_events_flagged", "Events that showed the "
                                "behaviour", labels=SHARE_LABELS)
    window = GaugeMetricFamily("saewatch_behaviour_window_share", "Share of events showing the "
                               "behaviour in a recent window", labels=WINDOW_LABELS)
    for s in summaries:
        for x in s.shares:
            values = [s.name, x.model_id, x.model_version]
            if x.window != "all":
                window.add_metric([*values, x.window], x.share)
                continue
            share.add_metric(values, x.share)
            low.add_metric(values, x.ci_low)
            high.add_metric(values, x.ci_high)
            scored.add_metric(values, float(x.documents))
            flagged.add_metric(values, float(x.flagged))
    yield from (share, low, high, scored, flagged, window)


def _changes(summaries: tuple[BehaviourSummary, ...]) -> Iterator[Metric]:
    delta = GaugeMetricFamily("saewatch_behaviour_share_change", "Candidate share minus "
                              "baseline share (0.05 = 5 points)", labels=CHANGE_LABELS)
    evidence = GaugeMetricFamily("saewatch_behaviour_log_evidence", "Log of the always-valid "
                                 "test's evidence for a change of share", labels=CHANGE_LABELS)
    alarm = GaugeMetricFamily("saewatch_behaviour_alarm", "1 when the always-valid test of the "
                              "version change rejected", labels=CHANGE_LABELS)
    for s in summaries:
        for c in s.comparisons:
            values = [s.name, c.model_id, c.baseline, c.candidate]
            delta.add_metric(values, c.delta)
            evidence.add_metric(values, c.log_evidence)
            alarm.add_metric(values, float(c.alarm))
    yield from (delta, evidence, alarm)
