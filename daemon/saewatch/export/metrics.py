"""Operational instruments of the pipeline, updated by the app as it consumes and encodes.

Everything registers on an injected :class:`~prometheus_client.CollectorRegistry`; series whose
label values are known up front (invalid reasons, text fields, stages) are pre-initialised at 0 so
``rate()`` and alerts see them before the first increment.

Every record is accounted for, in two ways:

- per process, as counters (reset by a restart, as Prometheus expects):
  ``events_consumed = events_processed + events_invalid + events_duplicate``;
- since the state began, as the gauge ``saewatch_state_records{outcome}``: the state's
  persisted tally, restored from the snapshot, whose sum is the number of records before the
  state's offsets (all that was produced, once the daemon caught up). A gauge, because after a
  crash it falls back to the snapshot's values; a resumed *counter* would fall too, and
  ``rate()`` would read the fall as a reset and count the whole total again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from saewatch.models import TEXT_FIELDS, InvalidReason, TextField

logger = logging.getLogger(__name__)

INVALID_REASONS: tuple[str, ...] = get_args(InvalidReason)
STAGES = ("source", "encode", "state", "diff", "export")
# What became of a record: the labels of saewatch_state_records (RecordTally.outcomes()).
RECORD_OUTCOMES = ("processed", "invalid", "duplicate")
TRUNCATION_LIMITS = ("chars", "tokens")  # source.max_chars, encode.max_tokens_per_text
# Encoding a batch takes ~0.3 s (MiniLM, bf16) to tens of seconds (SmolLM2 fp32 on 2 cores).
ENCODE_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
# Batches hold 1 .. source.batch_size (<= 10,000) documents.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Snapshots and diffs take milliseconds to seconds.
STEP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PipelineMetrics:
    """The daemon's self-metrics (``saewatch_`` prefix, base units, ``_total`` counters).

    Parameters
    ----------
    registry
        Where the instruments register; never the global default registry.

    Attributes
    ----------
    events_consumed, events_processed, events_invalid, events_duplicate, texts_truncated,
    texts_processed, tokens_processed, processing_errors : Counter
        ``events_invalid`` has label ``reason``; ``texts_*``/``tokens_processed`` have ``field``;
        ``processing_errors`` has ``stage``. In one process, ``events_consumed`` equals
        ``events_processed + events_invalid + events_duplicate``.
    state_records : Gauge
        Label ``outcome``; set through :meth:`set_state_records`.
    encode_duration, encode_batch_size, snapshot_duration, diff_duration : Histogram
    consumer_lag : Gauge
        Labels ``topic``, ``partition``; set through :meth:`set_consumer_lag` or
        :meth:`replace_consumer_lag`.
    partitions_assigned : Gauge
        Set by the app from the consumer's assignment.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> m = PipelineMetrics(registry)
    >>> m.events_invalid.labels(reason="schema").inc()
    >>> m.set_consumer_lag("llm-events", {0: 12, 1: 0})
    >>> registry.get_sample_value("saewatch_events_invalid_total", {"reason": "schema"})
    1.0
    >>> registry.get_sample_value("saewatch_events_invalid_total", {"reason": "oversize"})
    0.0
    >>> registry.get_sample_value("saewatch_consumer_lag_messages",
    ...                           {"topic": "llm-events", "partition": "0"})
    12.0
    >>> m.set_state_records({"processed": 90, "invalid": 3, "duplicate": 7})
    >>> registry.get_sample_value("saewatch_state_records", {"outcome": "duplicate"})
    7.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "saewatch"
        kw: dict[str, Any] = {"namespace": ns, "registry": registry}
        self.events_consumed = Counter(
            "events_consumed",
            "Records read from the source (= processed + invalid + duplicate, per process)",
            **kw,
        )
        self.events_processed = Counter(
            "events_processed",
            "Valid events newly counted: folded into the state (saewatch encode: published)",
            **kw,
        )
        self.events_invalid = Counter(
            "events_invalid", "Records rejected and sent to the dead-letter topic", ["reason"], **kw
        )
        self.events_duplicate = Counter(
            "events_duplicate",
            "Valid events the state dropped because their event_id was already counted (replays)",
            **kw,
        )
        # limit="chars": cut at the source (source.max_chars) before encoding;
        # limit="tokens": cut by the encoder's token budget (encode.max_tokens_per_text).
        self.texts_truncated = Counter(
            "texts_truncated", "Texts cut to a configured length, by which limit cut them",
            ["field", "limit"], **kw
        )
        self.texts_processed = Counter("texts_processed", "Texts encoded", ["field"], **kw)
        self.tokens_processed = Counter("tokens_processed", "Tokens encoded", ["field"], **kw)
        # A processing error is a record saewatch itself got wrong, unlike a producer's bad event
        # (only in events_invalid). Today: a features message an aggregator cannot decode
        # (stage="source"), written by a saewatch encoder, so version skew or corruption; it is
        # dead-lettered and in events_invalid too. No other stage skips a record: a failed encode
        # or state update stops the process and the batch is read again after the restart.
        self.processing_errors = Counter(
            "processing_errors",
            "Records skipped after an error of saewatch's own, per stage (also in events_invalid)",
            ["stage"],
            **kw,
        )
        # Not pre-initialised: only a process with a state (run, aggregate) sets it, at restore.
        self.state_records = Gauge(
            "state_records",
            "Records before the state's offsets by outcome, each counted once since the state "
            "began (persisted in its snapshots; the sum is every record read)",
            ["outcome"],
            **kw,
        )
        self._init_timing_metrics(kw)
        self._init_model_metrics(kw)
        self._pre_initialise()
        self._last_snapshot_at: float | None = None
        self.last_snapshot_age.set_function(self._snapshot_age)
        self._lag: dict[tuple[str, int], int] = {}

    def _init_timing_metrics(self, kw: Mapping[str, Any]) -> None:
        self.encode_duration = Histogram(
            "encode_duration_seconds",
            "Wall time to encode one batch (model + SAE)",
            buckets=ENCODE_SECONDS_BUCKETS,
            **kw,
        )
        self.encode_batch_size = Histogram(
            "encode_batch_size", "Documents per encoded batch", buckets=BATCH_SIZE_BUCKETS, **kw
        )
        self.snapshot_duration = Histogram(
            "snapshot_duration_seconds",
            "Wall time to write one state snapshot",
            buckets=STEP_SECONDS_BUCKETS,
            **kw,
        )
        self.diff_duration = Histogram(
            "diff_duration_seconds",
            "Wall time to compute one drift report",
            buckets=STEP_SECONDS_BUCKETS,
            **kw,
        )
        self.consumer_lag = Gauge(
            "consumer_lag_messages",
            "Messages behind the partition's end offset",
            ["topic", "partition"],
            **kw,
        )
        self.partitions_assigned = Gauge(
            "partitions_assigned", "Partitions currently assigned to this consumer", **kw
        )
        self.last_snapshot = Gauge(
            "last_snapshot_timestamp_seconds", "When the last state snapshot was written", **kw
        )
        self.last_snapshot_age = Gauge(
            "last_snapshot_age_seconds",
            "Seconds since the last state snapshot (-1: none yet)",
            **kw,
        )

    def _init_model_metrics(self, kw: Mapping[str, Any]) -> None:
        self.model_info = Info("model", "Language model, SAE, hook, device and precision in use", **kw)
        self.sae_latents = Gauge("sae_latents", "Width of the SAE (d_sae)", **kw)
        self.sae_variance_explained = Gauge(
            "sae_variance_explained_ratio",
            "Fraction of the hooked activations' variance the SAE reconstructs (sanity check)",
            **kw,
        )
        self.sae_mean_l0 = Gauge(
            "sae_mean_l0", "Mean number of active SAE latents per token (sanity check)", **kw
        )
        self.gpu_memory_allocated = Gauge(
            "gpu_memory_allocated_bytes", "CUDA memory allocated by tensors", ["device"], **kw
        )
        self.gpu_memory_reserved = Gauge(
            "gpu_memory_reserved_bytes",
            "CUDA memory reserved by the caching allocator",
            ["device"],
            **kw,
        )

    def _pre_initialise(self) -> None:
        for reason in INVALID_REASONS:
            self.events_invalid.labels(reason=reason)
        for field in TEXT_FIELDS:
            for limit in TRUNCATION_LIMITS:
                self.texts_truncated.labels(field=field, limit=limit)
            self.texts_processed.labels(field=field)
            self.tokens_processed.labels(field=field)
        for stage in STAGES:
            self.processing_errors.labels(stage=stage)

    def _snapshot_age(self) -> float:
        last = self._last_snapshot_at
        return -1.0 if last is None else max(0.0, time.time() - last)

    def observe_encode(
        self, field_tokens: Mapping[TextField, int], documents: int, seconds: float
    ) -> None:
        """Record one encoded batch: its size, duration and tokens per text field."""
        self.encode_duration.observe(seconds)
        self.encode_batch_size.observe(documents)
        for field, tokens in field_tokens.items():
            self.texts_processed.labels(field=field).inc(documents)
            self.tokens_processed.labels(field=field).inc(tokens)

    def count_folded(self, processed: int, duplicates: int, tally: Mapping[str, int]) -> None:
        """Record one batch folded into the state: events newly counted, events dropped as
        already counted, and the state's whole tally by outcome."""
        self.events_processed.inc(processed)
        self.events_duplicate.inc(duplicates)
        self.set_state_records(tally)

    def set_state_records(self, by_outcome: Mapping[str, int]) -> None:
        """Publish the state's tally (``RecordTally.outcomes()``), e.g. after each batch."""
        for outcome in RECORD_OUTCOMES:
            self.state_records.labels(outcome=outcome).set(by_outcome.get(outcome, 0))

    def snapshot_written(self, at: float | None = None, seconds: float | None = None) -> None:
        """Record a state snapshot written at Unix time ``at`` (now by default)."""
        self._last_snapshot_at = time.time() if at is None else at
        self.last_snapshot.set(self._last_snapshot_at)
        if seconds is not None:
            self.snapshot_duration.observe(seconds)

    def set_consumer_lag(self, topic: str, lag_by_partition: Mapping[int, int]) -> None:
        """Replace the lag series of ``topic``; partitions no longer assigned are removed."""
        others = {(t, p): v for (t, p), v in self._lag.items() if t != topic}
        self.replace_consumer_lag(
            {**others, **{(topic, p): v for p, v in lag_by_partition.items()}}
        )

    def replace_consumer_lag(self, lag: Mapping[tuple[str, int], int]) -> None:
        """Replace every lag series with ``lag`` (``(topic, partition) -> messages behind``).

        Series of partitions missing from ``lag`` (revoked in a rebalance) are removed rather than
        left at their last value.
        """
        for topic, partition in set(self._lag) - set(lag):
            self.consumer_lag.remove(topic, str(partition))
        for (topic, partition), behind in lag.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(behind)
        self._lag = dict(lag)

    def set_model(
        self,
        *,
        model: str,
        sae: str,
        hook: str,
        device: str,
        d_sae: int,
        encoder_id: str = "",
        precision: str = "",
    ) -> None:
        """Publish what encodes the texts (an ``_info`` series plus the SAE width); the
        precision the encoder settled on is there because ``auto`` decides it per CPU."""
        self.model_info.info(
            {
                "model": model,
                "sae": sae,
                "hook": hook,
                "device": device,
                "precision": precision,
                "d_sae": str(d_sae),
                "encoder_id": encoder_id,
            }
        )
        self.sae_latents.set(d_sae)

    def set_sae_sanity(self, variance_explained: float, mean_l0: float) -> None:
        """Publish the SAE's reconstruction quality on live traffic."""
        self.sae_variance_explained.set(variance_explained)
        self.sae_mean_l0.set(mean_l0)

    def set_gpu_memory(self, device: str, allocated_bytes: int, reserved_bytes: int) -> None:
        """Publish CUDA memory of ``device`` (call only when encoding on a GPU)."""
        self.gpu_memory_allocated.labels(device=device).set(allocated_bytes)
        self.gpu_memory_reserved.labels(device=device).set(reserved_bytes)
