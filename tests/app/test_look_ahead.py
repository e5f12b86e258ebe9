"""Polling one batch ahead (an encoder that tokenizes in a thread, issue 17): the next full poll
is begun before the current one is finished, a short poll is finished at once, and the state,
the accounting and the snapshots are exactly those of the plain loop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from saewatch.app import App
from saewatch.config import Settings, load_settings
from saewatch.encode.base import PendingCodes
from saewatch.encode.encoder import SAEEncoder
from saewatch.models import LLMEvent
from saewatch.state.snapshot import SnapshotStore
from tests.support.app import pair_events

POISON = [b"{not json", b'{"event_id": "x"}', b"\xff\xfe binary"]


class RecordingEncoder(SAEEncoder):
    """The tiny SAE encoder, writing down when each batch is begun and finished and in which
    thread its texts were tokenized."""

    log: list[tuple[str, int]]
    tokenized_in: set[str]

    def begin(self, events: Sequence[LLMEvent]) -> PendingCodes:
        self.log.append(("begin", len(events)))
        pending = super().begin(events)

        def finish() -> object:
            self.log.append(("finish", len(events)))
            return pending.result()

        return PendingCodes(events, finish)  # type: ignore[arg-type]

    def _tokenize_events(self, events: Sequence[LLMEvent]) -> list:  # type: ignore[override]
        self.tokenized_in.add(threading.current_thread().name)
        return super()._tokenize_events(events)


def _recording(factory: Callable[[], SAEEncoder], look_ahead: bool) -> RecordingEncoder:
    encoder = factory()
    encoder.__class__ = RecordingEncoder
    assert isinstance(encoder, RecordingEncoder)
    encoder._look_ahead = look_ahead
    encoder.log, encoder.tokenized_in = [], set()
    return encoder


def _settings(path: Path, snapshots: Path) -> Settings:
    return load_settings(
        None,
        source={"kind": "file", "path": path, "batch_size": 8},
        state={"snapshot_dir": snapshots, "snapshot_interval_s": 0.01},
        diff={"min_documents": 10, "interval_s": 0.01},
    )


def _run(tmp_path: Path, name: str, path: Path, encoder: SAEEncoder,
         max_events: int | None = None) -> tuple[App, CollectorRegistry]:
    registry = CollectorRegistry()
    app = App(_settings(path, tmp_path / name), encoder_factory=lambda: encoder,
              registry=registry, serve_http=False, max_events=max_events)
    assert app.run() == 0
    return app, registry


def _summary(app: App, registry: CollectorRegistry) -> dict[str, object]:
    assert app.state is not None
    counts = sorted((v.model_version, v.field, v.documents) for v in app.state.version_counts())
    samples = {name: registry.get_sample_value(name) for name in (
        "saewatch_events_consumed_total", "saewatch_events_processed_total")}
    return {"counts": counts, "tally": app.state.tally.outcomes(), "samples": samples,
            "handled": app.handled}


def test_look_ahead_begins_the_next_full_poll_first_and_changes_nothing(
    tmp_path: Path, tiny_encoder_factory: Callable[[], SAEEncoder], replay_file
) -> None:
    path = replay_file(pair_events(20), POISON)  # 43 records: five polls of 8, one of 3
    plain = _recording(tiny_encoder_factory, look_ahead=False)
    ahead = _recording(tiny_encoder_factory, look_ahead=True)
    app_plain, reg_plain = _run(tmp_path, "plain", path, plain)
    app_ahead, reg_ahead = _run(tmp_path, "ahead", path, ahead)

    assert _summary(app_ahead, reg_ahead) == _summary(app_plain, reg_plain)
    assert _summary(app_ahead, reg_ahead)["handled"] == 43
    for name in ("plain", "ahead"):
        latest = SnapshotStore(tmp_path / name).load_latest()
        assert latest is not None and latest.offsets == {(str(path), 0): 43}
    # The plain loop finishes each batch before polling again; tokenizing in the caller.
    valid = [n for step, n in plain.log if step == "begin"]  # valid events per poll
    assert plain.log == [step for n in valid for step in (("begin", n), ("finish", n))]
    assert plain.tokenized_in == {threading.current_thread().name}
    # Looking ahead: every full poll is finished only after the next poll was begun, and the
    # last, short poll (3 records) is finished at once. Tokenizing ran in the worker thread.
    sizes = [n for step, n in ahead.log if step == "begin"]
    assert sizes == valid
    expected: list[tuple[str, int]] = [("begin", sizes[0])]
    for n_prev, n in zip(sizes, sizes[1:], strict=False):
        expected += [("begin", n), ("finish", n_prev)]
    expected.append(("finish", sizes[-1]))
    assert ahead.log == expected
    assert {name.split("_")[0] for name in ahead.tokenized_in} == {"saewatch-tokenize"}
    assert ahead._tokenizer_thread is None  # closed with the app


@pytest.mark.parametrize("stop_at", [9, 17])
def test_a_stop_with_a_poll_in_hand_resumes_without_loss_or_double_count(
    tmp_path: Path, tiny_encoder_factory: Callable[[], SAEEncoder], replay_file, stop_at: int
) -> None:
    path = replay_file(pair_events(20), POISON)
    first, _ = _run(tmp_path, "snap", path, _recording(tiny_encoder_factory, True),
                    max_events=stop_at)
    partial = SnapshotStore(tmp_path / "snap").load_latest()
    assert partial is not None
    stopped_at = partial.offsets[(str(path), 0)]
    assert stopped_at == first.handled and stop_at <= stopped_at < 43
    second, _ = _run(tmp_path, "snap", path, _recording(tiny_encoder_factory, True))
    assert second.state is not None
    documents = {v.model_version: v.documents for v in second.state.version_counts()
                 if v.field == "response"}
    assert documents == {"v1": 20, "v2": 20}
    assert second.handled == 43 - stopped_at
    assert second.state.tally.duplicates == 0
