"""The shortcut is the daemon: one stream through the real App (file and Kafka) vs the cache.

The benchmark simulates streams from cached codes (:mod:`benchmarks.detection.simulate`). Once
per run, one scenario's events are also written as JSONL and replayed through
:class:`saewatch.app.App` with ``source.kind=file``, and produced to a real Kafka topic and
consumed by the App with ``source.kind=kafka`` (a broker from ``deploy/kafka`` via
:class:`~tests.support.kafka.LocalBroker`, or ``$SAEWATCH_KAFKA_BOOTSTRAP``). Both encode live
with the same encoder. Per-version document counts and per-feature firing counts of the response
field (up to a few near-threshold flips under bf16: :meth:`Summary.agrees`), the verdict, the
number of significant features and the top features must equal the simulation's final look;
otherwise :class:`EquivalenceError` stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection.simulate import (
    BASELINE,
    CANDIDATE,
    MODEL_ID,
    Replay,
    diff_settings,
    state_settings,
)
from saewatch.app import App
from saewatch.config import EncodeSettings, Settings, load_settings
from saewatch.encode.encoder import SAEEncoder
from saewatch.errors import SaewatchError
from saewatch.models import ComparisonResult, LLMEvent
from saewatch.state.monitor import MonitorState

logger = logging.getLogger(__name__)


# Share of all firings that may differ (see Summary.agrees): the same 120 responses encoded in
# two different batch compositions differ in 38 of 8,664 firings (0.44%) under bf16.
FLIP_TOLERANCE = 0.01


class EquivalenceError(SaewatchError):
    """The App replay and the cached simulation disagree; the benchmark's numbers are void."""


@dataclass(frozen=True)
class Summary:
    """What must agree between the paths."""

    documents: dict[str, int]
    fired_digest: dict[str, str]
    verdict: str
    n_significant: int
    alarm: bool
    top_up: list[int]
    top_down: list[int]
    fired: dict[str, list[int]]  # per-feature firing counts per side (compared with a tolerance)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "fired"}

    def flips(self, other: Summary) -> int:
        """Feature firings that differ between the two (summed over features and sides)."""
        return sum(int(np.abs(np.subtract(self.fired[v], other.fired.get(v, 0))).sum())
                   for v in self.fired)

    def agrees(self, other: Summary) -> bool:
        """Everything equal but up to ``FLIP_TOLERANCE`` of the firings.

        Under bf16 autocast the pooled activations depend a little on how texts are batched
        (padding changes the matmul blocking), so a feature just at its presence threshold can
        flip between the App's batches and the cache's; anything beyond that is a real
        difference.
        """
        same = (self.documents, self.verdict, self.n_significant, self.alarm, self.top_up,
                self.top_down) == (other.documents, other.verdict, other.n_significant,
                                   other.alarm, other.top_up, other.top_down)
        total = sum(sum(f) for f in self.fired.values())
        return same and self.flips(other) <= max(2, FLIP_TOLERANCE * total)


def summarize(state: MonitorState, result: ComparisonResult) -> Summary:
    fired = {v: state.counts(MODEL_ID, v, "response").fired for v in (BASELINE, CANDIDATE)}
    return Summary(
        documents={v.model_version: v.documents for v in state.version_counts()
                   if v.field == "response"},
        fired_digest={v: f"{int(f.sum())}:"
                      f"{hashlib.sha256(f.astype(np.int64).tobytes()).hexdigest()[:12]}"
                      for v, f in fired.items()},
        verdict=result.verdict, n_significant=result.n_significant,
        alarm=result.sequential_alarm,
        top_up=[d.feature for d in result.top_up], top_down=[d.feature for d in result.top_down],
        fired={v: f.astype(np.int64).tolist() for v, f in fired.items()},
    )


def _settings(encode: EncodeSettings, snapshots: Path, **sections: Any) -> dict[str, Any]:
    return {"encode": encode, "diff": diff_settings(),
            "state": state_settings().model_copy(update={"snapshot_dir": snapshots}), **sections}


def _run_app(settings: Settings, encoder: SAEEncoder, max_events: int | None) -> Summary:
    app = App(settings, encoder_factory=lambda: encoder, serve_http=False, max_events=max_events)
    app.run()
    report = app.reports.latest
    if app.state is None or report is None:
        raise EquivalenceError("the App finished without state or report")
    result = next(c for c in report.comparisons if c.key.baseline == BASELINE)
    return summarize(app.state, result)


def file_replay(events: list[LLMEvent], encoder: SAEEncoder, encode: EncodeSettings,
                work: Path) -> Summary:
    path = work / "events.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in events))
    settings = load_settings(None, source={"kind": "file", "path": path, "batch_size": 64},
                             **_settings(encode, work / "file-snapshots"))
    return _run_app(settings, encoder, None)


@contextmanager
def _broker(work: Path) -> Iterator[str]:
    from tests.support.kafka import LocalBroker, broker_answers

    given = os.environ.get("SAEWATCH_KAFKA_BOOTSTRAP")
    if given and broker_answers(given):
        yield given
        return
    broker = LocalBroker(work / "kafka")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop(purge=True)


def kafka_replay(events: list[LLMEvent], encoder: SAEEncoder, encode: EncodeSettings,
                 work: Path) -> Summary:
    from tests.support.kafka import KafkaCluster

    with _broker(work) as bootstrap:
        cluster = KafkaCluster(bootstrap)
        try:
            topic = cluster.create_topic(1, prefix="bench-detect")
            cluster.produce_raw(topic, [(e.event_id.encode(), e.model_dump_json().encode())
                                        for e in events])
            settings = cluster.settings(topic, **_settings(encode, work / "kafka-snapshots"))
            return _run_app(settings, encoder, len(events))
        finally:
            cluster.close()


def check(name: str, events: list[LLMEvent], simulated: Replay, encoder: SAEEncoder,
          encode: EncodeSettings, kafka: bool,
          replays: dict[str, Callable[..., Summary]] | None = None) -> dict[str, Any]:
    """Replay ``events`` through the App (file, and Kafka when ``kafka``) and compare."""
    if simulated.state is None or simulated.final is None:
        raise EquivalenceError("the simulation has no final look")
    expected = summarize(simulated.state, simulated.final)
    paths = replays or {"file": file_replay, **({"kafka": kafka_replay} if kafka else {})}
    out: dict[str, Any] = {"scenario": name, "events": len(events),
                           "simulation": expected.as_dict()}
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        for path_name, run in paths.items():
            work = Path(tmp) / path_name
            work.mkdir()
            got = run(events, encoder, encode, work)
            agrees = got.agrees(expected)
            out[path_name] = {**got.as_dict(), "equal": agrees, "flips": got.flips(expected)}
            logger.info("equivalence %s: %s", path_name, "equal" if agrees else got.as_dict())
    bad = [p for p in paths if not out[p]["equal"]]
    if bad:
        raise EquivalenceError(f"{', '.join(bad)} replay of {name!r} differs from the cached "
                               f"simulation: {out}")
    return out
