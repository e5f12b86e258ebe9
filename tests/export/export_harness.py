"""What the app builds for the export stage, as test fixtures use it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry

from saewatch.export import ExporterServer, PipelineMetrics, ReportHolder
from saewatch.models import DriftReport


@dataclass
class Exporter:
    """Everything the app would hold for the export stage."""

    server: ExporterServer
    registry: CollectorRegistry
    holder: ReportHolder
    metrics: PipelineMetrics

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def target(self) -> str:
        host, port = self.server.address
        return f"{host}:{port}"


ExporterFactory = Callable[..., Exporter]


def publish_history(holder: ReportHolder, report: DriftReport, points: int) -> None:
    """Publish ``points`` versions of ``report`` 10 s apart, ending with ``report`` itself.

    Drift scores rise towards the report's own, so the page's chart has a realistic shape.
    """
    for i in range(points):
        at = report.generated_at + timedelta(seconds=10 * (i - points + 1))
        # Flat before the candidate rolled out, then rising to the report's own score.
        factor = 1.0 if i == points - 1 else min(1.0, max(0.03, (3 * i - points) / points))
        comparisons = tuple(
            c.model_copy(update={"computed_at": at, "drift_score": c.drift_score * factor})
            for c in report.comparisons
        )
        holder.publish(report.model_copy(update={"generated_at": at, "comparisons": comparisons}))
