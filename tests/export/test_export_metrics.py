"""PipelineMetrics: injected registry, pre-initialised series, the app's update calls."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from export.drift_reports import exercise_pipeline
from saewatch.export import PipelineMetrics
from saewatch.export.metrics import INVALID_REASONS, STAGES


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_known_label_sets_are_pre_initialised(registry: CollectorRegistry) -> None:
    PipelineMetrics(registry)
    get = registry.get_sample_value
    assert set(INVALID_REASONS) == {"invalid_json", "schema", "encoding", "oversize", "encoder"}
    for reason in INVALID_REASONS:
        assert get("saewatch_events_invalid_total", {"reason": reason}) == 0.0
    for field in ("prompt", "response"):
        for limit in ("chars", "tokens"):
            assert get("saewatch_texts_truncated_total", {"field": field, "limit": limit}) == 0.0
        assert get("saewatch_tokens_processed_total", {"field": field}) == 0.0
    for stage in STAGES:
        assert get("saewatch_processing_errors_total", {"stage": stage}) == 0.0
    assert get("saewatch_events_consumed_total") == 0.0
    assert get("saewatch_last_snapshot_age_seconds") == -1.0


def test_app_updates_show_up_in_the_registry(registry: CollectorRegistry) -> None:
    metrics = PipelineMetrics(registry)
    exercise_pipeline(metrics)
    get = registry.get_sample_value
    assert get("saewatch_events_consumed_total") == 1000.0
    assert get("saewatch_events_invalid_total", {"reason": "schema"}) == 30.0
    assert get("saewatch_encode_duration_seconds_count") == 3.0
    assert get("saewatch_encode_duration_seconds_sum") == pytest.approx(8.3)
    assert get("saewatch_encode_duration_seconds_bucket", {"le": "2.5"}) == 1.0
    assert get("saewatch_encode_batch_size_sum") == 192.0
    assert get("saewatch_texts_processed_total", {"field": "response"}) == 192.0
    assert get("saewatch_tokens_processed_total", {"field": "response"}) == 3 * 64 * 210
    assert get("saewatch_sae_latents") == 4096.0
    assert get("saewatch_sae_variance_explained_ratio") == 0.83
    assert get("saewatch_sae_mean_l0") == 32.0
    assert get("saewatch_gpu_memory_reserved_bytes", {"device": "cuda:0"}) == 2e9
    info = {
        "model": "SmolLM2-135M-Instruct",
        "sae": "saewatch-default-topk",
        "hook": "blocks.15",
        "device": "cuda:0",
        "precision": "bf16",
        "d_sae": "4096",
        "encoder_id": "smollm2/15/topk-4096",
    }
    assert get("saewatch_model_info", info) == 1.0


def test_consumer_lag_follows_the_assignment(registry: CollectorRegistry) -> None:
    metrics = PipelineMetrics(registry)
    metrics.set_consumer_lag("llm-events", {0: 10, 1: 20, 2: 30})
    metrics.set_consumer_lag("llm-events.dlq", {0: 1})
    # A rebalance takes partitions 1 and 2 away: their series disappear instead of going stale.
    metrics.set_consumer_lag("llm-events", {0: 5})
    lag = {"topic": "llm-events", "partition": "0"}
    assert registry.get_sample_value("saewatch_consumer_lag_messages", lag) == 5.0
    gone = {"topic": "llm-events", "partition": "1"}
    assert registry.get_sample_value("saewatch_consumer_lag_messages", gone) is None
    assert (
        registry.get_sample_value(
            "saewatch_consumer_lag_messages", {"topic": "llm-events.dlq", "partition": "0"}
        )
        == 1.0
    )
    # A whole topic revoked: replace_consumer_lag drops it.
    metrics.replace_consumer_lag({("llm-events", 0): 3})
    assert (
        registry.get_sample_value(
            "saewatch_consumer_lag_messages", {"topic": "llm-events.dlq", "partition": "0"}
        )
        is None
    )
    assert registry.get_sample_value("saewatch_consumer_lag_messages", lag) == 3.0


def test_snapshot_age_is_computed_at_scrape_time(registry: CollectorRegistry) -> None:
    metrics = PipelineMetrics(registry)
    metrics.snapshot_written(at=time.time() - 120.0, seconds=0.5)
    age = registry.get_sample_value("saewatch_last_snapshot_age_seconds")
    assert age is not None and 119.0 <= age < 130.0
    assert registry.get_sample_value("saewatch_snapshot_duration_seconds_count") == 1.0


def test_registry_is_injected_not_global(registry: CollectorRegistry) -> None:
    PipelineMetrics(registry)
    other = CollectorRegistry()
    PipelineMetrics(other).events_consumed.inc()
    assert registry.get_sample_value("saewatch_events_consumed_total") == 0.0
    assert other.get_sample_value("saewatch_events_consumed_total") == 1.0
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PipelineMetrics(registry)


def test_names_follow_prometheus_conventions(registry: CollectorRegistry) -> None:
    exercise_pipeline(PipelineMetrics(registry))
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert families
    for family in families:
        assert family.name.startswith("saewatch_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram" and "duration" in family.name:
            assert family.name.endswith("_seconds")
