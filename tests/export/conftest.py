"""Fixtures of the export tests: a real exporter HTTP server and a real Prometheus.

``exporter`` builds what the app builds (registry, report holder, collector, pipeline metrics,
HTTP server on a free loopback port); ``prometheus`` starts Prometheus processes scraping it (see
:mod:`tests.support.prometheus`, shared with the end-to-end tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from export.drift_reports import drift_report
from export.export_harness import Exporter, ExporterFactory, publish_history
from saewatch.config import WebSettings
from saewatch.export import (
    BehaviourCollector,
    DriftReportCollector,
    ExporterServer,
    PipelineMetrics,
    ReadinessProbe,
    ReportHolder,
    StateQueries,
)
from saewatch.models import DriftReport
from saewatch.models.cards import FeatureCards
from tests.support.prometheus import PrometheusServer, prometheus_binary


@pytest.fixture
def exporter() -> Iterator[ExporterFactory]:
    """Factory: ``exporter(report=..., state=..., readiness=..., cards=..., **web_settings)``."""
    started: list[ExporterServer] = []

    def make(
        report: DriftReport | None = None,
        state: StateQueries | None = None,
        readiness: ReadinessProbe | None = None,
        history: int = 1,
        cards: FeatureCards | None = None,
        **web: Any,
    ) -> Exporter:
        settings = WebSettings(listen_address="127.0.0.1:0", **web)
        registry = CollectorRegistry()
        holder = ReportHolder()
        registry.register(DriftReportCollector(holder, top_k=settings.top_k))
        registry.register(BehaviourCollector(holder))
        metrics = PipelineMetrics(registry)
        if report is not None:
            publish_history(holder, report, history)
        server = ExporterServer(settings, registry, holder, state=state, readiness=readiness,
                                cards=cards)
        server.start()
        started.append(server)
        return Exporter(server, registry, holder, metrics)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def drifting(exporter: ExporterFactory) -> Exporter:
    """An exporter serving the drifting report with 12 points of history."""
    return exporter(report=drift_report(), history=12)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory of started :class:`PrometheusServer` processes, stopped at teardown."""
    if prometheus_binary() is None:
        pytest.fail("prometheus is not installed: run `make system-deps` (deploy/tools/install-test-deps.sh)", pytrace=False)
    servers: list[PrometheusServer] = []

    def start(
        targets: list[str], rule_files: list[Path] | None = None, **kw: Any
    ) -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prom{len(servers)}", targets, rule_files or [], **kw)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
