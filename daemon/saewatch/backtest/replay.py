"""Replay a file of events through encode → state → diff, looking as the stream grows.

The stages are composed through their contracts only: ``Encoder.encode`` (behind the code
cache), ``MonitorState.update``/``view`` and ``build_report``. The looks follow the
comparisons :func:`~saewatch.diff.plan.plan_comparisons` plans from the versions seen so far:
a comparison's *sides* are the (model_id, version, field) document counts it reads (a window
comparison has one side, its version), and a look is taken whenever every side of some planned
comparison has grown by ``every`` documents since that comparison's previous look. The clock of
a look is the latest event timestamp read, so the state's time windows see the file's time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from saewatch.backtest.cache import FIELDS, CodeCache, EncodeCounts, encode_cached
from saewatch.backtest.models import (
    BacktestResult,
    BacktestStats,
    ComparisonBrief,
    ComparisonFindings,
    Look,
)
from saewatch.config import Settings
from saewatch.diff.plan import WINDOW_SEPARATOR, plan_comparisons
from saewatch.diff.report import build_report
from saewatch.encode.base import Encoder
from saewatch.errors import SaewatchError
from saewatch.models import ComparisonKey, DriftReport, FeatureBatch, LLMEvent, VersionCount
from saewatch.source.file import FileSource
from saewatch.state.monitor import MonitorState

logger = logging.getLogger(__name__)

# Lines per poll of the file: the daemon's order of magnitude, and bounded memory per poll.
POLL_LINES = 1_000
_SEVERITY = {"insufficient_data": 0, "no_drift": 1, "drift": 2}
Side = tuple[str, str, str]  # model_id, model_version, field


class BacktestInputError(SaewatchError):
    """The events file cannot be backtested (missing, unreadable, or no valid event)."""


@dataclass(frozen=True)
class ReadFile:
    """The valid events of a file, in file order, and what was skipped.

    >>> ReadFile(events=[], lines=1, invalid={"invalid_json": 1}).invalid["invalid_json"]
    1
    """

    events: list[LLMEvent]
    lines: int
    invalid: dict[str, int]


def read_file(settings: Settings, path: Path) -> ReadFile:
    """Every valid event of ``path`` through the file source (the daemon's validation and
    truncation); invalid lines are counted by reason and skipped."""
    from saewatch.source.exceptions import ReplayFileError

    if not path.is_file():
        raise BacktestInputError(f"events file {path} does not exist: give a JSONL file of "
                                 "events (schemas/llm_event.schema.json)")
    events: list[LLMEvent] = []
    invalid: dict[str, int] = {}
    lines = 0
    try:
        with FileSource(settings, path=path) as source:
            while not source.exhausted:
                batch = source.poll_batch(POLL_LINES, 0.0)
                lines += len(batch)
                events += [r.event for r in batch.records]
                for bad in batch.invalid:
                    invalid[bad.reason] = invalid.get(bad.reason, 0) + 1
    except ReplayFileError as exc:
        raise BacktestInputError(f"{exc}: give a readable JSONL file of events") from exc
    if not events:
        raise BacktestInputError(
            f"{path}: no valid event in {lines} lines ({sum(invalid.values())} invalid): "
            "check it against schemas/llm_event.schema.json (saewatch schema)")
    return ReadFile(events, lines, invalid)


@dataclass
class _Tally:
    """Documents per side and first event time, counted as the events are read."""

    documents: dict[Side, int] = field(default_factory=dict)
    first_seen: dict[Side, datetime] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)

    def add(self, event: LLMEvent) -> bool:
        if event.event_id in self.seen_ids:  # the state drops it as a duplicate: so do we
            return False
        self.seen_ids.add(event.event_id)
        for f in FIELDS:
            side = (event.model_id, event.model_version, f)
            self.documents[side] = self.documents.get(side, 0) + 1
            self.first_seen.setdefault(side, event.timestamp)
        return True

    def versions(self) -> list[VersionCount]:
        return [VersionCount(model_id=m, model_version=v, field=f, documents=n,
                             first_seen=self.first_seen[(m, v, f)])
                for (m, v, f), n in self.documents.items()]


def sides_of(key: ComparisonKey) -> tuple[Side, ...]:
    """The document counts a comparison reads; a window comparison's are one version's.

    >>> sides_of(ComparisonKey(model_id="m", field="response", baseline="a", candidate="a@1h",
    ...                        kind="window"))
    (('m', 'a', 'response'),)
    """
    if key.kind == "window":
        return ((key.model_id, key.candidate.rpartition(WINDOW_SEPARATOR)[0], key.field),)
    return ((key.model_id, key.baseline, key.field), (key.model_id, key.candidate, key.field))


@dataclass
class _Looker:
    """Decides when to look and takes the looks (state, view, report)."""

    settings: Settings
    every: int
    labels: Mapping[int, str]
    state: MonitorState
    tally: _Tally = field(default_factory=_Tally)
    last: dict[ComparisonKey, dict[Side, int]] = field(default_factory=dict)
    looks: list[Look] = field(default_factory=list)
    report: DriftReport | None = None

    def due(self) -> list[ComparisonKey]:
        """The planned comparisons every side of which grew by ``every`` since their last look."""
        keys = plan_comparisons(self.tally.versions(), self.settings.diff,
                                self.state.window_names())
        counts = self.tally.documents
        return [k for k in keys if all(
            counts.get(s, 0) - self.last.get(k, {}).get(s, 0) >= self.every
            for s in sides_of(k))]

    def look(self, events_read: int, now: datetime, keys: Sequence[ComparisonKey]) -> None:
        for k in keys:
            self.last[k] = {s: self.tally.documents.get(s, 0) for s in sides_of(k)}
        report = build_report(self.state.view(now=now), self.settings.diff, self.labels)
        self.report = report
        briefs = tuple(ComparisonBrief.of(c) for c in report.comparisons)
        verdict = max((b.verdict for b in briefs), key=_SEVERITY.__getitem__,
                      default="insufficient_data")
        headline = next((b.headline for b in briefs if b.verdict == "drift" and b.headline),
                        None)
        planned = plan_comparisons(self.tally.versions(), self.settings.diff,
                                   self.state.window_names())
        sides = {"/".join(s): self.tally.documents.get(s, 0)
                 for k in planned for s in sides_of(k)}
        look = Look(index=len(self.looks), events_read=events_read, at=now, sides=sides,
                    verdict=verdict, headline=headline, comparisons=briefs)
        logger.info("look %d after %d events at %s: %s %s", look.index, events_read,
                    now.isoformat(), verdict, headline or "")
        self.looks.append(look)


def replay(
    settings: Settings, batch: FeatureBatch, every: int, labels: Mapping[int, str]
) -> tuple[list[Look], DriftReport | None]:
    """Fold ``batch``'s events into a fresh state in order, looking as described above; a last
    look is taken at the end of the file unless the last event already triggered one."""
    looker = _Looker(settings, every, labels, MonitorState(settings.state))
    folded = 0
    now: datetime | None = None
    for i, event in enumerate(batch.events):
        # Out-of-order timestamps must not move the clock back: windows only move forward.
        now = event.timestamp if now is None or event.timestamp > now else now
        if not looker.tally.add(event):
            continue
        keys = looker.due()
        if keys:
            looker.state.update(batch.take(list(range(folded, i + 1))))
            folded = i + 1
            looker.look(len(looker.tally.seen_ids), now, keys)
    if now is not None and (folded < len(batch.events) or not looker.looks):
        if folded < len(batch.events):
            looker.state.update(batch.take(list(range(folded, len(batch.events)))))
        looker.look(len(looker.tally.seen_ids), now, ())
    looks = looker.looks
    if looks:
        looks[-1] = looks[-1].model_copy(update={"final": True})
    return looks, looker.report


@dataclass(frozen=True)
class BacktestOptions:
    """What to replay, how often to look, and where the code cache lives (None: no cache).

    >>> BacktestOptions(path=Path("e.jsonl"), every=50, cache_root=None).every
    50
    """

    path: Path
    every: int
    cache_root: Path | None


def run_backtest(
    settings: Settings,
    options: BacktestOptions,
    read: ReadFile,
    encoder: Encoder,
    labels: Mapping[int, str],
) -> BacktestResult:
    """Encode (cached by text), replay and summarise the events ``read`` from ``options.path``
    (:func:`read_file`, called first so that a bad file fails before a model loads)."""
    started = time.monotonic()
    cache = (None if options.cache_root is None
             else CodeCache(options.cache_root, encoder.encoder_id, settings.encode))
    counts = EncodeCounts()
    encoding = time.monotonic()
    batch = encode_cached(encoder, read.events, cache, counts)
    encode_s = time.monotonic() - encoding
    looks, report = replay(settings, batch, options.every, labels)
    stats = BacktestStats(
        lines_read=read.lines, events_valid=len(read.events),
        events_invalid=sum(read.invalid.values()), invalid_by_reason=read.invalid,
        texts_encoded=counts.encoded, texts_cached=counts.cached,
        cache_dir=None if cache is None else str(cache.dir),
        encode_seconds=round(encode_s, 3), total_seconds=round(time.monotonic() - started, 3))
    return BacktestResult(
        file=str(options.path), every=options.every, encoder_id=encoder.encoder_id,
        looks=tuple(looks), first_drift=next((lk for lk in looks if lk.verdict == "drift"), None),
        final=() if report is None else tuple(ComparisonFindings.of(c)
                                              for c in report.comparisons),
        stats=stats)


__all__ = ["BacktestInputError", "BacktestOptions", "ReadFile", "read_file", "replay",
           "run_backtest", "sides_of"]
