"""What every long-running saewatch process shares: the stop flag, readiness, and the per-batch
steps with their metrics.

``saewatch run`` and ``aggregate`` (:mod:`saewatch.app`), ``saewatch encode``
(:mod:`saewatch.roles`) and ``saewatch consume`` (:mod:`saewatch.consume`) each enter their
stages on an ExitStack, install :class:`StopFlag` (signals only set it), report
:class:`Readiness` on ``/-/ready``, and account for every polled record with
:func:`count_polled`; encoding and folding go through :func:`finish_timed` (of a batch begun
with :meth:`~saewatch.encode.base.Encoder.begin`) and :func:`fold`, and
the periodic gauges through :func:`report_source` and :func:`report_encoder`. Everything they
read about a source or an encoder is on its contract (:class:`~saewatch.source.base.Source`,
:class:`~saewatch.encode.base.Encoder`).

>>> ready = Readiness(state_restored=True)
>>> ready()
(False, 'model not loaded; no partitions assigned')
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from saewatch.config import Settings
from saewatch.encode.base import Encoder, PendingCodes
from saewatch.export.metrics import PipelineMetrics
from saewatch.models import TEXT_FIELDS, FeatureBatch, SourceBatch, TopicPartition
from saewatch.source.base import ResumeOffset, Source
from saewatch.source.exceptions import SourceClosedError
from saewatch.state.monitor import MonitorState

logger = logging.getLogger(__name__)

# Builds a source given the resume callback (the snapshot's offsets) and the stop event.
SourceFactory = Callable[[ResumeOffset, threading.Event], Source]


@dataclass
class Readiness:
    """``/-/ready``: model loaded, partitions assigned, state restored."""

    model_loaded: bool = False
    state_restored: bool = False
    source: Source | None = None
    reasons: list[str] = field(default_factory=list)

    def __call__(self) -> tuple[bool, str]:
        missing = [
            name
            for name, ok in (
                ("model not loaded", self.model_loaded),
                ("state not restored", self.state_restored),
                ("no partitions assigned", self.source is not None and bool(self._assigned())),
            )
            if not ok
        ]
        return (not missing, "; ".join(missing) or "ready")

    def _assigned(self) -> frozenset[TopicPartition]:
        return self.source.assignment() if self.source is not None else frozenset()


class StopFlag:
    """Set by SIGTERM/SIGINT; a second Ctrl+C restores the default handler (hard stop)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s: finishing the batch in hand, then checkpointing", signum)
        self.event.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    def explains(self, exc: SourceClosedError) -> bool:
        """Whether ``exc`` (a source or producer that gave up connecting) is this flag's doing:
        a signal while the broker was away is a clean stop, anything else an error.

        >>> flag = StopFlag()
        >>> flag.explains(SourceClosedError("gave up")), flag.event.set(), flag.explains(
        ...     SourceClosedError("gave up"))
        (False, None, True)
        """
        if not self.event.is_set():
            return False
        logger.info("stopped before the Kafka broker answered; nothing was read")
        return True

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def count_polled(metrics: PipelineMetrics, batch: SourceBatch) -> None:
    """Records read, invalid ones by reason, texts cut to ``source.max_chars``."""
    metrics.events_consumed.inc(len(batch))
    for bad in batch.invalid:
        metrics.events_invalid.labels(reason=bad.reason).inc()
    for record in batch.records:
        for name in record.truncated_fields:
            metrics.texts_truncated.labels(field=name, limit="chars").inc()


def fold(state: MonitorState, codes: FeatureBatch | None, invalid: int,
         metrics: PipelineMetrics) -> None:
    """Fold ``codes`` into ``state`` and tally the ``invalid`` records; count both in metrics."""
    before = state.tally
    state.count_invalid(invalid)
    if codes is not None:
        state.update(codes)
    done = state.tally - before
    metrics.count_folded(done.processed, done.duplicates, state.tally.outcomes())


def finish_timed(pending: PendingCodes, metrics: PipelineMetrics) -> FeatureBatch:
    """Finish a begun batch (:meth:`Encoder.begin`), recording duration, size, tokens and
    token-budget cuts; the duration is the caller's wait, so tokenizing done ahead in a thread
    is not counted twice."""
    started = time.monotonic()
    codes = pending.result()
    seconds = time.monotonic() - started
    tokens = {}
    for name in TEXT_FIELDS:
        field = codes.codes(name)
        tokens[name] = int(field.n_tokens.sum())
        metrics.texts_truncated.labels(field=name, limit="tokens").inc(int(field.truncated.sum()))
    metrics.observe_encode(tokens, len(codes), seconds)
    return codes


def report_source(metrics: PipelineMetrics, source: Source) -> None:
    """Partitions assigned and, where the source measures it, lag per partition."""
    metrics.partitions_assigned.set(len(source.assignment()))
    by_topic: dict[str, dict[int, int]] = {}
    for (topic, partition), value in source.lag().items():
        by_topic.setdefault(topic, {})[partition] = value
    for topic, values in by_topic.items():
        metrics.set_consumer_lag(topic, values)


def report_encoder(metrics: PipelineMetrics, encoder: Encoder | None) -> None:
    """SAE sanity (FVE, L0 on the first tokens) and GPU memory, when known."""
    if encoder is None:
        return
    health = encoder.health
    if health is not None and health.fve is not None and health.mean_l0 is not None:
        metrics.set_sae_sanity(health.fve, health.mean_l0)
    memory = encoder.device_memory()
    if memory is not None:
        metrics.set_gpu_memory(memory.device, memory.allocated, memory.reserved)


def report_model(metrics: PipelineMetrics, encoder: Encoder) -> None:
    """``saewatch_model_info`` and the SAE width, from the encoder's own description."""
    info = encoder.describe()
    metrics.set_model(model=info.model, sae=info.sae, hook=info.hook, device=info.device,
                      precision=info.precision, d_sae=encoder.d_sae,
                      encoder_id=encoder.encoder_id)


def default_encoder(settings: Settings) -> Callable[[], Encoder]:
    """The configured encoder, built when called (the model loads only then)."""

    def build() -> Encoder:
        from saewatch.encode.encoder import SAEEncoder

        return SAEEncoder.from_settings(settings.encode)

    return build
