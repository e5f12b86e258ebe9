"""Replay a stream through the daemon's state+diff path from cached codes, looking as it grows.

What the daemon does per batch is ``MonitorState.update(codes)``, and per diff interval
``build_report(state.view(), ...)``. Here the codes come from the
:class:`~benchmarks.detection.cache.CodeStore` instead of the encoder, and a "look" (the report
the daemon would publish) is taken every ``look_every`` events per side. The equivalence of this
shortcut with the real App (file and Kafka sources, live encoder) is checked once per run by
:mod:`benchmarks.detection.equivalence`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from benchmarks.detection.cache import CodeStore
from benchmarks.detection.scenarios import Doc, Stream
from saewatch.config import DiffSettings, StateSettings
from saewatch.diff.report import build_report
from saewatch.models import ComparisonResult, FeatureBatch, LLMEvent, SparseCodes
from saewatch.state.monitor import MonitorState

logger = logging.getLogger(__name__)

MODEL_ID = "detect"
BASELINE, CANDIDATE = "baseline", "candidate"
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def diff_settings() -> DiffSettings:
    """The daemon's diff defaults (alpha 0.01, q 0.05, top 10) without window comparisons.

    The comparison is the daemon's automatic "newest version vs the one before" (baseline events
    arrive first). ``min_documents`` is lowered from the default 100 to its minimum 10: the
    always-valid test needs no warm-up, and 100 would floor every delay at 100 events per side.
    (An explicit ``diff.comparisons`` entry would do the same, but the App then fails to build
    its first report while the state is still empty.)
    """
    return DiffSettings(auto_latest=True, window_comparisons=False, min_documents=10, top_k=10,
                        examples_per_side=3)


def state_settings() -> StateSettings:
    """State defaults, except clusters skip their warm-up buffer (~60 ms per event in Python).

    Clusters are not part of any comparison, so counts, examples and verdicts are unchanged.
    """
    return StateSettings(retrieval_capacity=10_000, cluster_warmup_events=0)


def looks(stream: Stream, every: int) -> list[int]:
    """Events per side at each look: every ``every`` and the full stream."""
    n = stream.length
    points = list(range(every, n + 1, every))
    return points + ([n] if not points or points[-1] != n else [])


def stream_events(stream: Stream, every: int) -> list[LLMEvent]:
    """Both sides interleaved look by look (baseline chunk, then candidate chunk), as arrival:
    a canary."""
    out: list[LLMEvent] = []
    previous = 0
    for point in looks(stream, every):
        for version, docs in ((BASELINE, stream.baseline), (CANDIDATE, stream.candidate)):
            out += [_event(d, version, len(out) + i) for i, d in enumerate(docs[previous:point])]
        previous = point
    return out


def release_events(stream: Stream) -> tuple[list[LLMEvent], list[LLMEvent]]:
    """A release: every baseline event first, then the candidate's (looked at as they come)."""
    n = stream.length
    base = [_event(d, BASELINE, i) for i, d in enumerate(stream.baseline[:n])]
    cand = [_event(d, CANDIDATE, n + i) for i, d in enumerate(stream.candidate[:n])]
    return base, cand


def _event(doc: Doc, version: str, position: int) -> LLMEvent:
    # Prompts stay empty: the comparison is on responses, and the App replays encode the same.
    return LLMEvent(event_id=doc.event_id, timestamp=T0 + timedelta(seconds=position),
                    model_id=MODEL_ID, model_version=version, prompt="", response=doc.text)


def feature_batch(store: CodeStore, events: list[LLMEvent]) -> FeatureBatch:
    """The FeatureBatch the encoder would produce for ``events`` (from the cache)."""
    empty = SparseCodes.from_rows([[] for _ in events], [[] for _ in events])
    return FeatureBatch(encoder_id=store.encoder_id, d_sae=store.d_sae, events=tuple(events),
                        prompt=empty, response=store.codes([e.response for e in events]))


@dataclass
class Look:
    events_per_side: int
    verdict: str
    n_significant: int
    alarm: bool  # the per-feature family
    bet_alarm: bool = False  # the pooled betting test
    bet_log_evidence: float = 0.0  # its peak log e-value
    descriptor_moved: bool = False


@dataclass
class Replay:
    """What the daemon would have shown over one stream."""

    looks: list[Look] = field(default_factory=list)
    final: ComparisonResult | None = None
    state: MonitorState | None = None

    @property
    def first_drift(self) -> int | None:
        """Events per side at the first look whose verdict is ``drift`` (None: never)."""
        return next((k.events_per_side for k in self.looks if k.verdict == "drift"), None)

    @property
    def any_alarm(self) -> bool:
        return any(k.verdict == "drift" or k.alarm for k in self.looks)

    def first(self, what: str) -> int | None:
        """Events per side at the first look where ``what`` (``bet_alarm``, ``alarm``,
        ``descriptor_moved``) held."""
        return next((k.events_per_side for k in self.looks if getattr(k, what)), None)


def replay(stream: Stream, store: CodeStore, labels: Mapping[int, str], every: int,
           release: bool = False) -> Replay:
    """Feed the stream look by look into a fresh MonitorState and build the report at each.

    ``release``: all baseline events first (no look: there is nothing to compare yet), then
    the candidate's, looked at every ``every`` of them; else a canary (both sides per look).
    """
    settings = diff_settings()
    state = MonitorState(state_settings())
    out = Replay(state=state)
    previous = 0
    if release:
        base, cand = release_events(stream)
        state.update(feature_batch(store, base))
    else:
        events = stream_events(stream, every)
    for point in looks(stream, every):
        chunk = cand[previous:point] if release else events[2 * previous : 2 * point]
        state.update(feature_batch(store, chunk))
        previous = point
        report = build_report(state.view(now=T0), settings, labels=labels)
        result = report.comparisons[0]
        out.looks.append(Look(point, result.verdict, result.n_significant,
                              result.sequential_alarm, result.bet_alarm,
                              result.bet.peak_log_evidence if result.bet else 0.0,
                              bool(result.moved_descriptors)))
        out.final = result
    return out
