"""The export stage: Prometheus metrics, the JSON API and the report page, on one HTTP port.

Wiring (done by the app)::

    registry = CollectorRegistry()
    holder = ReportHolder()
    registry.register(DriftReportCollector(holder, top_k=settings.web.top_k))
    registry.register(BehaviourCollector(holder))
    metrics = PipelineMetrics(registry)
    server = ExporterServer(settings.web, registry, holder, readiness=ready)
    server.start()            # ... holder.publish(report, view) after every diff ...
    server.stop()
"""

from saewatch.export.base import HistoryPoint, ReportHolder, StateQueries
from saewatch.export.behaviours import BehaviourCollector
from saewatch.export.collector import TOP_K_HARD_CAP, DriftReportCollector
from saewatch.export.metrics import PipelineMetrics
from saewatch.export.web.http import ExporterServer, ReadinessProbe

__all__ = [
    "TOP_K_HARD_CAP",
    "BehaviourCollector",
    "DriftReportCollector",
    "ExporterServer",
    "HistoryPoint",
    "PipelineMetrics",
    "ReadinessProbe",
    "ReportHolder",
    "StateQueries",
]
