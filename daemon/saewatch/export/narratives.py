"""The summariser: a thread that has the optional LLM (``labels.llm``) write a few sentences
on each of the most drifted comparisons, and keeps them beside the report for the API and the
report page.

It never blocks the consumer or a request: it watches the :class:`ReportHolder` for new
reports, and writes a narrative only for a comparison whose findings changed since its last
one (:func:`~saewatch.llm.summary.findings_digest`), at most
``labels.llm.summary_comparisons`` per report, most drifted first. An endpoint failure is
logged and counted (``saewatch_llm_requests_total{purpose="summary",outcome="error"}``) and the
comparison is tried again after :data:`RETRY_AFTER_S` or when its findings change; monitoring
goes on without the text.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from prometheus_client import CollectorRegistry, Counter

from saewatch.config import LLMSettings
from saewatch.errors import LLMError
from saewatch.export.base import ReportHolder
from saewatch.llm.client import ChatClient
from saewatch.llm.summary import findings_digest, summarise
from saewatch.models import ComparisonKey, ComparisonResult

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 300.0
CHECK_EVERY_S = 1.0


class Summariser:
    """Narratives for the latest report's most drifted comparisons, written in a thread.

    Parameters
    ----------
    holder
        Where reports are published and narratives are kept.
    client
        The OpenAI-compatible endpoint.
    settings
        ``labels.llm`` (how many comparisons per report).
    registry
        Where ``saewatch_llm_requests_total`` is registered.

    >>> from prometheus_client import CollectorRegistry
    >>> from saewatch.config import LLMSettings
    >>> llm = LLMSettings(base_url="http://127.0.0.1:1/v1", model="m")
    >>> summariser = Summariser(ReportHolder(), ChatClient(llm), llm, CollectorRegistry())
    >>> summariser.write_due()  # no report yet: nothing to write
    0
    """

    def __init__(self, holder: ReportHolder, client: ChatClient, settings: LLMSettings,
                 registry: CollectorRegistry) -> None:
        self.holder = holder
        self.client = client
        self.settings = settings
        self.requests = Counter(
            "saewatch_llm_requests", "Requests to the optional LLM endpoint (labels.llm)",
            ["purpose", "outcome"], registry=registry)
        for outcome in ("ok", "error"):
            self.requests.labels(purpose="summary", outcome=outcome)
        self._failed: dict[ComparisonKey, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self) -> list[ComparisonResult]:
        """Drifted comparisons of the latest report whose narrative is missing or stale, most
        drifted first, at most ``summary_comparisons``."""
        report = self.holder.latest
        if report is None:
            return []
        drifted = sorted((r for r in report.comparisons if r.verdict == "drift"),
                         key=lambda r: -r.drift_score)[: self.settings.summary_comparisons]
        now = time.monotonic()
        wanted = []
        for result in drifted:
            digest = findings_digest(result)
            current = self.holder.narrative(result.key)
            if current is not None and current.findings_digest == digest:
                continue
            failed = self._failed.get(result.key)
            if failed is not None and failed[0] == digest and now - failed[1] < RETRY_AFTER_S:
                continue
            wanted.append(result)
        return wanted

    def write_due(self) -> int:
        """Write the narratives :meth:`due` lists; how many were written."""
        written = 0
        for result in self.due():
            if self._stop.is_set():
                break
            try:
                narrative = summarise(self.client, result)
            except LLMError as exc:
                self.requests.labels(purpose="summary", outcome="error").inc()
                self._failed[result.key] = (findings_digest(result), time.monotonic())
                logger.warning("no narrative for %s: %s", result.key, exc)
                continue
            self.requests.labels(purpose="summary", outcome="ok").inc()
            self._failed.pop(result.key, None)
            self.holder.set_narrative(result.key, narrative)
            written += 1
        return written

    def __enter__(self) -> Summariser:
        self._thread = threading.Thread(target=self._run, name="saewatch-summariser",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_s * 2 + 5)

    def _run(self) -> None:
        seen = -1
        while not self._stop.wait(CHECK_EVERY_S):
            published = self.holder.published
            if published != seen or self._failed:
                seen = published
                self.write_due()
