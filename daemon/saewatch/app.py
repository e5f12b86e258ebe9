"""Wiring and lifecycle: source -> encode -> state -> diff -> export, in one process.

The stages are entered as context managers on an :class:`~contextlib.ExitStack`; signals only set
a stop flag; the loop finishes the batch in hand and shutdown ends with a forced checkpoint (see
:mod:`saewatch.checkpoint` for its steps). ``saewatch encode`` / ``saewatch aggregate`` reuse the
same pieces for the scale-out split (:mod:`saewatch.roles`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry

from saewatch.checkpoint import Checkpointer, OffsetTracker
from saewatch.config import EncodeSettings, Settings
from saewatch.diff.report import build_report
from saewatch.encode.base import Encoder, PendingCodes
from saewatch.errors import ConfigError
from saewatch.export.base import ReportHolder
from saewatch.export.metrics import PipelineMetrics
from saewatch.export.web.behaviour_writes import BehaviourChanges
from saewatch.models import FeatureBatch, SourceBatch
from saewatch.runtime import (
    Readiness,
    SourceFactory,
    StopFlag,
    count_polled,
    default_encoder,
    finish_timed,
    fold,
    report_encoder,
    report_model,
    report_source,
)
from saewatch.source.base import ResumeOffset, Source
from saewatch.source.exceptions import SourceClosedError
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore

if TYPE_CHECKING:
    from saewatch.export.web.http import ExporterServer

logger = logging.getLogger(__name__)

Role = Literal["run", "aggregate"]


def features_source(
    settings: Settings, resume: ResumeOffset, stop: threading.Event,
    encoder: tuple[str, int] | None = None,
) -> Source:
    """The aggregator's source: the features topic, in a consumer group of its own, held to one
    ``encoder`` (id, d_sae): the restored state's, else the first message's."""
    from saewatch.codec import FeaturesDecoder
    from saewatch.source.kafka import KafkaSource

    kafka = settings.kafka
    # One poll may return a whole batch (the consumer caps a poll at max_poll_records).
    polls = max(kafka.max_poll_records, settings.source.features_batch_size)
    settings = settings.model_copy(
        update={"kafka": kafka.model_copy(update={"max_poll_records": polls})})
    return KafkaSource(
        settings, resume, topics=[kafka.features_topic], stop=stop,
        decode=FeaturesDecoder(bound=encoder),
        group_id=f"{kafka.group_id}-aggregate", dlq_topic=f"{kafka.features_topic}.dlq",
    )


@dataclass(frozen=True)
class RolePlan:
    """What differs between ``saewatch run`` and ``saewatch aggregate``, decided once here so the
    loop has no role branches.

    >>> RolePlan.of(Settings(), "aggregate").encodes
    False
    """

    batch_size: int  # records per poll
    encodes: bool  # False: records arrive already encoded (the features topic)
    invalid_is_error: bool  # saewatch wrote the records itself: an invalid one is its own error

    @classmethod
    def of(cls, settings: Settings, role: Role) -> RolePlan:
        if role == "aggregate":
            return cls(settings.source.features_batch_size, encodes=False, invalid_is_error=True)
        return cls(settings.source.batch_size, encodes=True, invalid_is_error=False)


class App:
    """The daemon: one consumer loop, a checkpointer, a diff timer and an HTTP server.

    Parameters
    ----------
    settings
        The validated configuration.
    encoder_factory
        Builds the encoder (default: from ``settings.encode``); injected by tests and benchmarks.
    source_factory
        Builds the source given the resume callback and the stop event.
    registry
        Where metrics register (a fresh one per app by default; never the global registry).
    max_events
        Stop after this many records (valid + invalid) were handled; for replays and tests.
    serve_http
        Serve metrics, API and report page on ``web.listen_address``.
    stop_when_exhausted
        Stop at the end of a finite source (a file); otherwise keep serving until stopped.
    role
        ``"run"``: read LLM events and encode them here. ``"aggregate"``: read already encoded
        events from the features topic (published by ``saewatch encode`` replicas).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        encoder_factory: Callable[[], Encoder] | None = None,
        source_factory: SourceFactory | None = None,
        registry: CollectorRegistry | None = None,
        max_events: int | None = None,
        serve_http: bool = True,
        stop_when_exhausted: bool = True,
        role: Role = "run",
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.reports = ReportHolder()
        self.readiness = Readiness()
        # POST/DELETE /api/v1/behaviours, applied on the loop thread between batches.
        self.behaviour_changes = BehaviourChanges()
        self.stop_flag = StopFlag()
        self.max_events = max_events
        self.serve_http = serve_http
        self.stop_when_exhausted = stop_when_exhausted
        self.role = role
        self._plan = RolePlan.of(settings, role)
        self.handled = 0
        self.state: MonitorState | None = None
        self._encoder_factory = encoder_factory or default_encoder(settings)
        self._source_factory = source_factory or _default_source(settings, role,
                                                                 self._counted_encoder)
        self._labels: Mapping[int, str] = {}
        self._server: ExporterServer | None = None  # where serve_http, once started

    def stop(self) -> None:
        self.stop_flag.event.set()

    def _counted_encoder(self) -> tuple[str, int] | None:
        """(encoder id, d_sae) of the codes the restored state holds, if any."""
        state = self.state
        if state is None or state.encoder_id is None or state.d_sae is None:
            return None
        return state.encoder_id, state.d_sae

    def run(self) -> int:
        """Run until stopped (signal, :meth:`stop`, ``max_events`` or the end of a file)."""
        with ExitStack() as stack:
            stack.enter_context(self.stop_flag.installed())
            store = SnapshotStore(
                self.settings.state.snapshot_dir, self.settings.state.snapshots_kept
            )
            state, offsets = self._restore(store)
            self.readiness.state_restored = True
            if self.serve_http:
                self._start_http(stack)
            encoder = self._load_encoder(state)
            if encoder is not None:
                stack.callback(encoder.close)
            self._use_cards(encoder)
            tracker = OffsetTracker(offsets)
            # Every (re)assignment resumes where the state is now, not where it was at start.
            try:
                source = stack.enter_context(
                    self._source_factory(tracker.next, self.stop_flag.event))
            except SourceClosedError as exc:
                if not self.stop_flag.explains(exc):
                    raise
                return 0
            self.readiness.source = source
            checkpointer = Checkpointer(
                state, store, source, tracker, self.settings.state.snapshot_interval_s,
                on_written=self._snapshot_written,
            )
            # The forced checkpoint runs on the way out, also after an error in the loop: what
            # was folded into state before the error is persisted together with its offsets.
            stack.callback(checkpointer.checkpoint)
            self._loop(source, encoder, state, tracker, checkpointer)
            self._publish_report(state)
        logger.info("stopped after %d records", self.handled)
        return 0

    # --- the loop --------------------------------------------------------------------------

    def _loop(
        self,
        source: Source,
        encoder: Encoder | None,
        state: MonitorState,
        tracker: OffsetTracker,
        checkpointer: Checkpointer,
    ) -> None:
        src = self.settings.source
        size = self._plan.batch_size
        # An encoder that works ahead (tokenizing in a thread, on GPU hosts) gets the next poll
        # begun before the current one is finished, but only under backlog (a full poll): a
        # short poll is finished at once rather than held for a poll that may wait its timeout.
        # Nothing of the poll in hand is in the state or its offsets until it is folded, so a
        # checkpoint or a crash meanwhile re-reads it, as for any unfolded record.
        look_ahead = encoder is not None and encoder.looks_ahead
        in_hand: _Begun | None = None
        next_report = time.monotonic()
        while not self.stop_flag.event.is_set():
            polled = source.poll_batch(size, src.poll_timeout_s)
            batch = tracker.fresh(polled)
            begun = self._begin(batch, encoder) if len(batch) else None
            if in_hand is not None:
                self._finish(in_hand, state, tracker)
                in_hand = None
            if begun is not None:
                if look_ahead and len(polled) >= size:
                    in_hand = begun
                else:
                    self._finish(begun, state, tracker)
            elif not len(polled) and self.stop_when_exhausted and source.exhausted:
                logger.info("source exhausted")
                break
            checkpointer.maybe_checkpoint()
            if self.behaviour_changes.pending():  # asked over HTTP; shown in the next report
                from saewatch.behaviours import apply_change

                self.behaviour_changes.apply_all(lambda c: apply_change(state, encoder, c))
                next_report = time.monotonic()
            if time.monotonic() >= next_report:
                self._publish_report(state)
                report_source(self.metrics, source)
                report_encoder(self.metrics, encoder)
                next_report = time.monotonic() + self.settings.diff.interval_s
            pending = 0 if in_hand is None else len(in_hand.batch)
            if self.max_events is not None and self.handled + pending >= self.max_events:
                break
        if in_hand is not None:  # the poll in hand is finished on the way out, like any batch
            self._finish(in_hand, state, tracker)

    def _begin(self, batch: SourceBatch, encoder: Encoder | None) -> _Begun:
        count_polled(self.metrics, batch)
        if self._plan.invalid_is_error:
            self.metrics.processing_errors.labels(stage="source").inc(len(batch.invalid))
        pending = None
        if batch.records and encoder is not None:
            pending = encoder.begin([r.event for r in batch.records])
        return _Begun(batch, pending)

    def _finish(self, begun: _Begun, state: MonitorState, tracker: OffsetTracker) -> None:
        batch = begun.batch
        codes = None
        if begun.pending is not None:
            codes = finish_timed(begun.pending, self.metrics)
        elif batch.records:
            codes = FeatureBatch.concat([r.codes for r in batch.records if r.codes is not None])
        fold(state, codes, len(batch.invalid), self.metrics)
        tracker.advance_batch(batch)
        self.handled += len(batch)

    # --- pieces ------------------------------------------------------------------------------

    def _restore(self, store: SnapshotStore) -> tuple[MonitorState, dict[tuple[str, int], int]]:
        state = MonitorState(self.settings.state)
        latest = store.load_latest()
        offsets: dict[tuple[str, int], int] = {}
        if latest is not None:
            state.restore(latest.state)
            offsets = dict(latest.offsets)
            logger.info("restored %s: %d partitions, %s", latest.path, len(offsets), state.tally)
        self.metrics.set_state_records(state.tally.outcomes())
        self.state = state
        return state, offsets

    def _load_encoder(self, state: MonitorState) -> Encoder | None:
        if not self._plan.encodes:  # codes arrive encoded; labels follow the configured SAE
            if self.settings.behaviours:
                logger.warning("behaviours: not fitted here (this role has no encoder); run "
                               "saewatch behaviour add against this state.snapshot_dir")
            self.readiness.model_loaded = True
            self._labels = _labels(self.settings.encode, None)
            return None
        encoder = self._encoder_factory()
        if state.encoder_id is not None and state.encoder_id != encoder.encoder_id:
            raise ConfigError(
                f"the snapshots in {self.settings.state.snapshot_dir} hold codes of encoder "
                f"{state.encoder_id!r}, but the configured one is {encoder.encoder_id!r}: "
                "point state.snapshot_dir at a new directory for the new model or SAE"
            )
        self.readiness.model_loaded = True
        report_model(self.metrics, encoder)
        self._labels = _labels(self.settings.encode, encoder)
        if self.settings.behaviours:  # fitted where the restored state lacks them
            from saewatch.behaviours import apply_configured

            apply_configured(state, encoder, self.settings.behaviours)
        return encoder

    def _use_cards(self, encoder: Encoder | None) -> None:
        """Serve the feature cards of the SAE in use (``encode.cards_path``, else the default
        SAE's when its id matches the encoder's or the restored state's; they load without
        torch)."""
        if self._server is None:
            return
        from saewatch.encode.cards import cards_for_settings

        known = ((encoder.encoder_id, encoder.d_sae) if encoder is not None
                 else self._counted_encoder())
        encoder_id, d_sae = known if known is not None else (None, None)
        self._server.features.use(cards_for_settings(self.settings.encode, d_sae, encoder_id))

    def _publish_report(self, state: MonitorState) -> None:
        """Take a frozen view of the state here, on the consumer thread (nothing changes while
        it copies), diff it, and swap (report, view) into the holder by reference: the HTTP
        API then reads the view, never the live state, and never waits for the consumer."""
        started = time.monotonic()
        view = state.view(now=datetime.now(UTC))
        viewed = time.monotonic()
        report = build_report(view, self.settings.diff, labels=self._labels)
        self.reports.publish(report, view)
        finished = time.monotonic()
        self.metrics.diff_duration.observe(finished - started)
        logger.debug("state view in %.1f ms, report in %.1f ms", 1e3 * (viewed - started),
                     1e3 * (finished - viewed))

    def _snapshot_written(self, seconds: float) -> None:
        self.metrics.snapshot_written(seconds=seconds)

    def _start_http(self, stack: ExitStack) -> None:
        from saewatch.export.behaviours import BehaviourCollector
        from saewatch.export.collector import DriftReportCollector
        from saewatch.export.web.http import ExporterServer

        self.registry.register(DriftReportCollector(self.reports, top_k=self.settings.web.top_k))
        self.registry.register(BehaviourCollector(self.reports))
        # No state handed over: the API answers from the view published with each report.
        # Feature cards follow once the encoder is known (_use_cards).
        server = ExporterServer(
            self.settings.web, self.registry, self.reports, readiness=self.readiness,
            behaviour_changes=self.behaviour_changes,
        )
        stack.enter_context(server)
        self._server = server
        llm = self.settings.labels.llm
        if llm is not None and llm.summaries:  # narratives of the findings, in a thread
            from saewatch.export.narratives import Summariser
            from saewatch.llm.client import ChatClient

            stack.enter_context(Summariser(self.reports, ChatClient(llm), llm, self.registry))


@dataclass(frozen=True)
class _Begun:
    """A polled batch and, where its events are encoded here, their begun codes."""

    batch: SourceBatch
    pending: PendingCodes | None


def _labels(settings: EncodeSettings, encoder: Encoder | None) -> dict[int, str]:
    """Short labels per feature, by the encode stage's own rule (:func:`labels_for_settings`)."""
    from saewatch.encode.labels import labels_for_settings

    labels = labels_for_settings(settings, encoder.d_sae if encoder is not None else None,
                                 encoder.encoder_id if encoder is not None else None)
    return {} if labels is None else {f.feature: f.label for f in labels.features if f.label}

def _default_source(settings: Settings, role: Role,
                    counted: Callable[[], tuple[str, int] | None]) -> SourceFactory:
    def build(resume: ResumeOffset, stop: threading.Event) -> Source:
        if role == "aggregate":  # built after the state is restored: it knows its encoder
            return features_source(settings, resume, stop, counted())
        if settings.source.kind == "file":
            from saewatch.source.file import FileSource

            return FileSource(settings, resume=resume)
        from saewatch.source.kafka import KafkaSource

        return KafkaSource(settings, resume, stop=stop)

    return build
