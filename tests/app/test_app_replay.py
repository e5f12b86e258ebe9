"""The one-process daemon over a file: every record accounted, state exact across restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from saewatch.app import App
from saewatch.config import Settings, load_settings
from saewatch.encode.encoder import SAEEncoder
from saewatch.state.snapshot import SnapshotStore
from tests.support.app import pair_events

POISON = [b"{not json", b'{"event_id": "x"}', b"\xff\xfe binary"]


def _settings(path: Path, snapshots: Path) -> Settings:
    return load_settings(
        None,
        source={"kind": "file", "path": path, "batch_size": 8},
        state={"snapshot_dir": snapshots, "snapshot_interval_s": 0.01},
        # A configured comparison is reported (insufficient data) before any event arrives.
        diff={"min_documents": 10, "interval_s": 0.01,
              "comparisons": [{"model_id": "bot", "baseline": "v1", "candidate": "v2"}]},
    )


def _documents(app: App) -> dict[str, int]:
    assert app.state is not None
    return {v.model_version: v.documents for v in app.state.version_counts()
            if v.field == "response"}


def test_replay_accounts_for_every_record(
    tmp_path: Path, tiny_encoder_factory: Callable[[], SAEEncoder], replay_file
) -> None:
    path = replay_file(pair_events(20), POISON)
    registry = CollectorRegistry()
    app = App(_settings(path, tmp_path / "snap"), encoder_factory=tiny_encoder_factory,
              registry=registry, serve_http=False)
    assert app.run() == 0
    assert _documents(app) == {"v1": 20, "v2": 20}
    assert registry.get_sample_value("saewatch_events_consumed_total") == 43
    assert registry.get_sample_value("saewatch_events_processed_total") == 40
    invalid = {r: registry.get_sample_value("saewatch_events_invalid_total", {"reason": r})
               for r in ("invalid_json", "schema", "encoding")}
    assert invalid == {"invalid_json": 1.0, "schema": 1.0, "encoding": 1.0}
    latest = SnapshotStore(tmp_path / "snap").load_latest()
    assert latest is not None and latest.offsets == {(str(path), 0): 43}
    report = app.reports.latest
    assert report is not None
    versions = [c for c in report.comparisons if c.key.kind != "window"]
    assert [(c.key.baseline, c.key.candidate, c.n_baseline, c.n_candidate) for c in versions] == [
        ("v1", "v2", 20, 20)
    ]


def test_restart_resumes_after_the_snapshot_without_double_counting(
    tmp_path: Path, tiny_encoder_factory: Callable[[], SAEEncoder], replay_file
) -> None:
    path = replay_file(pair_events(20), POISON)
    settings = _settings(path, tmp_path / "snap")
    first = App(settings, encoder_factory=tiny_encoder_factory, max_events=17, serve_http=False)
    first.run()
    partial = SnapshotStore(tmp_path / "snap").load_latest()
    assert partial is not None
    stopped_at = partial.offsets[(str(path), 0)]
    assert 17 <= stopped_at < 43
    second = App(settings, encoder_factory=tiny_encoder_factory, serve_http=False)
    second.run()
    assert _documents(second) == {"v1": 20, "v2": 20}
    assert second.handled == 43 - stopped_at


def test_the_encoder_in_use_is_published_as_model_info(
    tmp_path: Path, tiny_encoder_factory: Callable[[], SAEEncoder], replay_file
) -> None:
    registry = CollectorRegistry()
    app = App(_settings(replay_file(pair_events(2), []), tmp_path / "snap"),
              encoder_factory=tiny_encoder_factory, registry=registry, serve_http=False)
    app.run()
    labels = {"model": "tiny", "hook": "blocks.1.hook_resid_post", "sae": "random-topk",
              "device": "cpu", "precision": "fp32", "d_sae": "256",
              "encoder_id": "tiny/blocks.1.hook_resid_post/random-topk"}
    assert registry.get_sample_value("saewatch_model_info", labels) == 1.0
    assert registry.get_sample_value("saewatch_sae_latents") == 256
