"""The daemon's per-batch accounting: records read, invalid ones, and truncations by limit."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from saewatch.encode.base import Encoder
from saewatch.export.metrics import PipelineMetrics
from saewatch.models import (
    FeatureBatch,
    InvalidRecord,
    LLMEvent,
    Record,
    SourceBatch,
    SourcePosition,
    SparseCodes,
)
from saewatch.runtime import count_polled, finish_timed
from saewatch.state.testing import T0


def position(offset: int) -> SourcePosition:
    return SourcePosition(topic="t", partition=0, offset=offset)


def event(i: int) -> LLMEvent:
    return LLMEvent(event_id=f"e{i}", timestamp=T0, model_id="m", model_version="v1",
                    prompt="p" * 10, response="r" * 10)


class CuttingEncoder(Encoder):
    """Reports every response as cut by the token budget, no prompt."""

    d_sae = 4

    def encode(self, events: Sequence[LLMEvent]) -> FeatureBatch:
        n = len(events)
        prompt = SparseCodes.from_rows([[]] * n, [[]] * n, n_tokens=[3] * n)
        response = SparseCodes.from_rows([[1]] * n, [[1.0]] * n, n_tokens=[8] * n,
                                         truncated=[True] * n)
        return FeatureBatch(encoder_id="cut", d_sae=4, events=tuple(events), prompt=prompt,
                            response=response)


def test_truncations_are_counted_by_the_limit_that_cut_them() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    batch = SourceBatch(
        records=(Record(event=event(0), position=position(0), truncated_fields=("prompt",)),
                 Record(event=event(1), position=position(1))),
        invalid=(InvalidRecord(position=position(2), reason="schema", error="x", raw=b"{}"),),
    )
    count_polled(metrics, batch)
    finish_timed(CuttingEncoder().begin([r.event for r in batch.records]), metrics)
    get = registry.get_sample_value
    assert get("saewatch_events_consumed_total") == 3
    assert get("saewatch_events_invalid_total", {"reason": "schema"}) == 1
    cut = {(f, lim): get("saewatch_texts_truncated_total", {"field": f, "limit": lim})
           for f in ("prompt", "response") for lim in ("chars", "tokens")}
    assert cut == {("prompt", "chars"): 1, ("prompt", "tokens"): 0,
                   ("response", "chars"): 0, ("response", "tokens"): 2}
    assert get("saewatch_tokens_processed_total", {"field": "response"}) == 16


def test_the_aggregator_polls_features_in_large_batches(monkeypatch) -> None:
    """``saewatch aggregate`` reads whole ``features_batch_size`` batches in one poll."""
    import threading

    import saewatch.source.kafka as kafka_source
    from saewatch.app import features_source
    from saewatch.config import load_settings

    seen = {}

    class Recorder:
        def __init__(self, settings, resume, **kwargs) -> None:  # noqa: ANN001
            seen["settings"], seen["kwargs"] = settings, kwargs

    monkeypatch.setattr(kafka_source, "KafkaSource", Recorder)
    settings = load_settings(None, kafka={"max_poll_records": 128},
                             source={"features_batch_size": 700})
    features_source(settings, lambda tp: None, threading.Event())
    assert seen["settings"].kafka.max_poll_records == 700
    assert seen["kwargs"]["topics"] == [settings.kafka.features_topic]
    assert settings.source.batch_size == 64 and settings.kafka.max_poll_records == 128
