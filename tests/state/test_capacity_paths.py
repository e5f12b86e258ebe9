"""The vectorised state paths of issue 13 item 7 give what the per-event ones gave.

Each fast path is checked against a plain reference kept here (the code it replaced, or a
per-text/per-event spelling of the same rule): the betting test's pairing, queues and version
segments (with the witness refitted every pair, as before, the numbers are the old ones), the
descriptors, the metadata co-occurrence table, the clusters' cached centres, the one-hot slots
and the concatenation of codes. Counts must be identical, not close.
"""

from __future__ import annotations

import math
import re
from collections import deque

import numpy as np
import pytest

import saewatch.state.betting as betting
from saewatch.config import StateSettings
from saewatch.datasets import read_alpaca
from saewatch.models import DESCRIPTOR_NAMES, N_DESCRIPTORS, FeatureBatch, SparseCodes
from saewatch.state.bets import VersionBets
from saewatch.state.betting import Observation, PairedBet
from saewatch.state.clusters import StreamingClusters
from saewatch.state.cooccurrence import CooccurrenceCounter
from saewatch.state.descriptor_counts import descriptor_values
from saewatch.state.descriptors import extract_descriptors
from saewatch.state.monitor import MonitorState
from saewatch.state.npmi import MetadataTable
from saewatch.state.observations import Rows
from saewatch.state.testing import T0, make_batch

D = 64


# --- the betting test ---------------------------------------------------------------------------

class ReferenceBet:
    """The test as it was: one event at a time, the witness refitted before every pair."""

    def __init__(self, d_sae: int, capacity: int) -> None:
        self.queues: tuple[deque[Observation], deque[Observation]] = (
            deque(maxlen=capacity), deque(maxlen=capacity))
        self.sums = np.zeros((2, d_sae))
        self.d_sums = np.zeros((2, N_DESCRIPTORS))
        self.d_squares = np.zeros(N_DESCRIPTORS)
        self.pairs, self.scale_sum, self.peak = 0, 0.0, 0.0
        self.log_wealth = np.zeros(len(betting.LAMBDAS))

    def log_evidence(self) -> float:
        top = float(self.log_wealth.max())
        return top + math.log(float(np.mean(np.exp(self.log_wealth - top))))

    def add(self, side: int, obs: Observation) -> None:
        self.queues[side].append(obs)
        while self.queues[0] and self.queues[1]:
            self.bet(self.queues[0].popleft(), self.queues[1].popleft())

    def score(self, obs: Observation) -> float:
        n = self.pairs
        mean = self.sums[:, obs.features] / n
        pooled = (mean[0] + mean[1]) / 2
        w = betting._weights(mean[1] - mean[0], pooled * (1 - pooled), n, betting.FEATURE_FLOOR)
        d = self.d_sums / n
        var = np.maximum(self.d_squares / (2 * n) - ((d[0] + d[1]) / 2) ** 2, 0.0)
        wd = betting._weights(d[1] - d[0], var, n, betting.DESCRIPTOR_FLOOR)
        return float(w.sum() + (wd * obs.descriptors).sum())

    def bet(self, a: Observation, b: Observation) -> None:
        if self.pairs > 0:
            raw = self.score(b) - self.score(a)
            if self.scale_sum > 0:
                payoff = math.tanh(raw / (self.scale_sum / self.pairs))
                self.log_wealth += np.log1p(betting.LAMBDAS * payoff)
                self.peak = max(self.peak, self.log_evidence())
            self.scale_sum += abs(raw)
        self.sums[0, a.features] += 1.0
        self.sums[1, b.features] += 1.0
        self.d_sums += np.stack([a.descriptors, b.descriptors])
        self.d_squares += a.descriptors**2 + b.descriptors**2
        self.pairs += 1


class ReferenceVersionBets:
    """VersionBets as it was: every event on its own, in arrival order."""

    def __init__(self, d_sae: int, capacity: int) -> None:
        self.d_sae, self.capacity = d_sae, capacity
        self.order: dict[tuple[str, str], list[str]] = {}
        self.recent: dict[tuple[str, str, str], deque[Observation]] = {}
        self.bets: dict[tuple[str, str, str, str], ReferenceBet] = {}

    def update(self, batch: FeatureBatch) -> None:
        for field in ("prompt", "response"):
            codes = batch.codes(field)
            values = np.log1p(descriptor_values(batch, field))
            for i, event in enumerate(batch.events):
                if event.text(field):
                    obs = Observation(codes.row(i)[0].astype(np.int32), values[i])
                    self.add(event.model_id, field, event.model_version, obs)

    def add(self, model_id: str, field: str, version: str, obs: Observation) -> None:
        order = self.order.setdefault((model_id, field), [])
        if version not in order:
            if order:
                bet = ReferenceBet(self.d_sae, self.capacity)
                for old in self.recent.get((model_id, field, order[-1]), ()):
                    bet.add(0, old)
                self.bets[(model_id, field, order[-1], version)] = bet
                mine = [k for k in self.bets if k[:2] == (model_id, field)]
                for old_key in mine[:-3]:
                    del self.bets[old_key]
            order.append(version)
        for (m, f, base, cand), bet in self.bets.items():
            if m == model_id and f == field and version in (base, cand):
                bet.add(0 if version == base else 1, obs)
        self.recent.setdefault((model_id, field, version),
                               deque(maxlen=self.capacity)).append(obs)


def mixed_stream(rng: np.random.Generator) -> list[FeatureBatch]:
    """A release, a canary of three versions, a second model, empty prompts and one side far
    ahead of the other (its queue overflows)."""
    plan = [(300, ["v1"], "m"), (50, ["v1", "v2"], "m"), (100, ["v2"], "m"),
            (200, ["v1", "v2", "v2", "v3"], "m"), (80, ["v3", "v1"], "n"), (40, ["v4", "v3"], "m"),
            (400, ["v3"] + ["v4"] * 7, "m"), (60, ["a", "b", "v4"], "n")]
    out, start = [], 0
    for n, versions, model in plan:
        rows = [sorted(set(rng.integers(0, D, rng.integers(0, 9)).tolist())) for _ in range(n)]
        prompts = [sorted(set(rng.integers(0, D, rng.integers(0, 4)).tolist())) for _ in range(n)]
        batch = make_batch(rows, D, model_id=model, prompt_rows=prompts, start=start,
                           texts=[" ".join(["w"] * int(rng.integers(1, 40))) for _ in range(n)])
        events = tuple(e.model_copy(update={
            "model_version": versions[int(rng.integers(len(versions)))],
            "prompt": "" if rng.random() < 0.2 else "q " * int(rng.integers(1, 9))})
            for e in batch.events)
        out.append(batch.model_copy(update={"events": events}))
        start += n
    return out


def test_version_bets_refitting_every_pair_is_the_per_event_test(monkeypatch) -> None:
    monkeypatch.setattr(betting, "refit_every", lambda pairs: 1)
    fast, slow = VersionBets(D, 60), ReferenceVersionBets(D, 60)
    for batch in mixed_stream(np.random.default_rng(0)):
        fast.update(batch)
        slow.update(batch)
    assert set(fast._bets) == set(slow.bets) and len(slow.bets) >= 8
    for key, ref in slow.bets.items():
        e = fast.evidence(*key)
        assert e is not None
        assert (e.pairs, e.pending_baseline, e.pending_candidate) == (
            ref.pairs, len(ref.queues[0]), len(ref.queues[1]))
        assert e.log_evidence == pytest.approx(ref.log_evidence(), abs=1e-12)
        assert e.peak_log_evidence == pytest.approx(ref.peak, abs=1e-12)
    assert any(len(q) == 60 for bet in slow.bets.values() for q in bet.queues)  # overflowed
    for key, queue in slow.recent.items():
        assert [o.features.tolist() for o in fast._recent[key]] == [
            o.features.tolist() for o in queue]


def test_a_batch_of_events_bets_exactly_as_one_event_at_a_time() -> None:
    rng = np.random.default_rng(1)
    sides = (rng.random(3_000) < 0.3).astype(int)  # the baseline runs ahead: its queue drops
    obs = [Observation(np.flatnonzero(rng.random(D) < 0.1 + 0.1 * s).astype(np.int32),
                       rng.normal(size=N_DESCRIPTORS)) for s in sides]
    one = PairedBet(D, N_DESCRIPTORS, 100)
    for side, o in zip(sides, obs, strict=True):
        one.add(int(side), o)
    many = PairedBet(D, N_DESCRIPTORS, 100)
    cuts = np.sort(rng.choice(np.arange(1, 3_000), size=40, replace=False))
    for lo, hi in zip([0, *cuts], [*cuts, 3_000], strict=True):
        many.extend(sides[lo:hi], Rows.of(obs[lo:hi], N_DESCRIPTORS))
    assert one.pairs == many.pairs > 500 and one.pending(0) == many.pending(0)
    assert (sides == 0).sum() - one.pairs - one.pending(0) > 100  # that many were dropped
    assert (one.log_evidence, one.peak_log_evidence) == (many.log_evidence,
                                                         many.peak_log_evidence)
    a, b = one.snapshot(), many.snapshot()
    for key in a:
        if key != "queues":
            assert np.array_equal(a[key], b[key]), key


def test_the_state_bets_the_same_whatever_the_poll_size() -> None:
    stream = mixed_stream(np.random.default_rng(2))
    whole = MonitorState(StateSettings(retrieval_capacity=1_000, cluster_warmup_events=0))
    for batch in stream:
        whole.update(batch)
    pieces = MonitorState(StateSettings(retrieval_capacity=1_000, cluster_warmup_events=0))
    for batch in stream:
        for lo in range(0, len(batch), 7):
            pieces.update(batch.take(range(lo, min(lo + 7, len(batch)))))
    def bets(state: MonitorState) -> list[object]:  # the list's order follows creation
        return sorted(state.view(now=T0).bets, key=lambda e: (e.model_id, e.field, e.baseline))

    assert bets(whole) == bets(pieces) and len(bets(whole)) >= 8


# --- descriptors --------------------------------------------------------------------------------

# The markdown pattern as it was (before the possessive indentation and the look-ahead).
STRUCTURE = re.compile(
    r"\n[ \t]*(?:(?P<list_items>(?:[-*+•]|\d{1,3}[.)])[ \t]+\S)|(?P<code_blocks>```|~~~)"
    r"|(?P<headers>#{1,6}[ \t]+\S)"
    r"|(?P<tables>\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+(?:[ \t]*:?-{3,}:?[ \t]*)?$))",
    re.MULTILINE)


def reference_descriptors(text: str, tokens: int) -> list[float]:
    """Every descriptor of one text, spelt out character by character."""
    row = dict.fromkeys(DESCRIPTOR_NAMES, 0.0)
    raw = text.encode("utf-8", errors="surrogatepass")
    row["words"] = sum(1 for i, b in enumerate(raw) if b > 32 and (i == 0 or raw[i - 1] <= 32))
    row["characters"], row["tokens"] = len(text), tokens
    row["lines"] = text.count("\n") + 1 if text else 0
    row["question_marks"] = text.count("?") + text.count("\uff1f")
    letters = sum(c.isalpha() for c in text)
    if letters:
        row["uppercase_share"] = sum(c.isupper() for c in text) / letters
        row["non_ascii_share"] = sum(c.isalpha() and ord(c) > 127 for c in text) / letters
    for match in STRUCTURE.finditer("\n" + text):
        row[str(match.lastgroup)] += 1
    row["code_blocks"] = math.ceil(row["code_blocks"] / 2)
    return [float(row[n]) for n in DESCRIPTOR_NAMES]


def test_descriptors_equal_the_per_text_reference_on_real_and_odd_texts() -> None:
    texts = [r.output for m in ("claude-2.1", "claude-2.1_concise") for r in read_alpaca(m)]
    texts += [r.instruction for r in read_alpaca("claude-2.1")]
    texts += ["", " ", "\x00\x01 a\x1f", "é", "ⅧⅨ abc", "\ud800x", "Ǆ ǅ ǆ", "１２３？", "a\n\n",
              "\n", "  - item\n\t1) two\n |---|:-:|\n## h\n~~~", "-- not\n  -x\n#no"]
    order = np.random.default_rng(3).permutation(len(texts))
    texts = [texts[i] for i in order]
    tokens = np.arange(len(texts)) % 300
    for lo in range(0, len(texts), 256):
        got = extract_descriptors(texts[lo:lo + 256], tokens[lo:lo + 256])
        want = [reference_descriptors(t, int(n)) for t, n in
                zip(texts[lo:lo + 256], tokens[lo:lo + 256], strict=True)]
        assert np.array_equal(got, np.array(want)), lo


# --- co-occurrence, metadata, clusters, codes ----------------------------------------------------

def test_metadata_lookups_once_per_distinct_dict_count_as_once_per_event() -> None:
    rng = np.random.default_rng(4)
    metadata = [{"tenant": f"t{rng.integers(6)}", "route": f"r{rng.integers(3)}"}
                for _ in range(200)] + [{}] * 5
    onehot = {f: (rng.random((len(metadata), 8)) < 0.3).astype(np.float32)
              for f in ("prompt", "response")}
    fast = MetadataTable(max_values=5, n_slots=8)  # fills up: later entries overflow
    fast.update(metadata, onehot)
    slow = MetadataTable(max_values=5, n_slots=8)
    pairs = [(d, slow._entry(k, v)) for d, md in enumerate(metadata) for k, v in md.items()]
    docs, entries = np.array([(d, i) for d, i in pairs if i >= 0]).T
    for f in ("prompt", "response"):
        for d, i in zip(docs, entries, strict=True):
            slow._c[f][i] += onehot[f][d].astype(np.int64)
            slow._d[f][i] += 1
    assert fast.values == slow.values and fast.overflow == slow.overflow > 0
    for f in ("prompt", "response"):
        assert np.array_equal(fast.counts(f), slow.counts(f))
        assert np.array_equal(fast._d[f], slow._d[f])


def test_one_hot_slots_are_the_row_column_scatter() -> None:
    co = CooccurrenceCounter(d_sae=D, top_n=16)
    rng = np.random.default_rng(5)
    rows = [sorted(set(rng.integers(0, D, rng.integers(0, 12)).tolist())) for _ in range(50)]
    batch = make_batch(rows, D)
    co.update(batch)
    lengths = np.diff(batch.response.indptr)
    slots = co._slot["response"][batch.response.indices]
    want = np.zeros((50, 16), dtype=np.float32)
    owner = np.repeat(np.arange(50), lengths)
    want[owner[slots >= 0], slots[slots >= 0]] = 1.0
    assert np.array_equal(co._onehot(batch, "response", lengths), want) and want.sum() > 0


def test_cached_cluster_centres_change_nothing(monkeypatch) -> None:
    rng = np.random.default_rng(6)
    batches = [make_batch([sorted(set(rng.integers(0, D, 6).tolist())) for _ in range(64)], D,
                          start=64 * j) for j in range(12)]
    cached = StreamingClusters(D, n_clusters=4, dims=8, warmup=200, learn_every=16)
    for b in batches:
        cached.update(b)
    original = StreamingClusters.centres

    def uncached(self: StreamingClusters) -> np.ndarray:
        self._centres = None
        return original(self)

    monkeypatch.setattr(StreamingClusters, "centres", uncached)
    fresh = StreamingClusters(D, n_clusters=4, dims=8, warmup=200, learn_every=16)
    for b in batches:
        fresh.update(b)
    a, b = cached.snapshot(), fresh.snapshot()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_concatenated_codes_keep_every_row() -> None:
    rng = np.random.default_rng(7)
    parts = [make_batch([sorted(rng.choice(D, rng.integers(0, 5), replace=False).tolist())
                         for _ in range(n)], D).response for n in (1, 0, 3, 1, 2)]
    joined = SparseCodes.concat(parts)
    rows = [p.row(i)[0].tolist() for p in parts for i in range(len(p))]
    assert [joined.row(i)[0].tolist() for i in range(len(joined))] == rows
    assert joined.indptr[-1] == len(joined.indices) and len(joined) == 7


# --- the whole state ----------------------------------------------------------------------------

def reference_metadata_update(self: MetadataTable, metadata: list[dict[str, str]],
                              onehot: dict[str, np.ndarray]) -> None:
    """MetadataTable.update as it was: one lookup per (event, entry)."""
    pairs = [(d, self._entry(k, v)) for d, md in enumerate(metadata) for k, v in md.items()]
    pairs = [(d, i) for d, i in pairs if i >= 0]
    if not pairs:
        return
    docs, entries = np.array(pairs, dtype=np.int64).T
    used, column = np.unique(entries, return_inverse=True)
    mv = np.zeros((len(metadata), len(used)), dtype=np.float32)
    mv[docs, column] = 1.0
    for f in ("prompt", "response"):
        self._c[f][used] += np.rint(mv.T @ onehot[f]).astype(np.int64)
        self._d[f][used] += np.bincount(column, minlength=len(used))[:, None]


def reference_onehot(self: CooccurrenceCounter, batch: FeatureBatch, field: str,
                     lengths: np.ndarray) -> np.ndarray:
    slots = self._slot[field][batch.codes(field).indices]
    rows = np.repeat(np.arange(len(lengths)), lengths)
    out = np.zeros((len(lengths), len(self._tracked[field])), dtype=np.float32)
    out[rows[slots >= 0], slots[slots >= 0]] = 1.0
    return out


def same(a: object, b: object, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


def test_the_whole_state_snapshot_is_that_of_the_reference_paths(monkeypatch) -> None:
    rng = np.random.default_rng(8)
    texts = [r.output for r in read_alpaca("claude-2.1")][:600]
    batches = []
    for j in range(6):
        rows = [sorted(set(rng.integers(0, D, rng.integers(0, 12)).tolist())) for _ in range(100)]
        batch = make_batch(rows, D, start=100 * j, texts=texts[100 * j:100 * j + 100],
                           prompt_rows=[r[:3] for r in rows],
                           metadata=[{"tenant": f"t{rng.integers(5)}"} for _ in range(100)])
        events = tuple(e.model_copy(update={"model_version": f"v{i % 2 + j // 3}"})
                       for i, e in enumerate(batch.events))
        batches.append(batch.model_copy(update={"events": events}))
    settings = StateSettings(retrieval_capacity=1_000, cluster_warmup_events=200,
                             cluster_learn_every=16, cluster_count=4, cluster_dims=8,
                             cooccurrence_top_n=16, metadata_values_max=3)
    fast = MonitorState(settings)
    for b in batches:
        fast.update(b)
    original = StreamingClusters.centres

    def uncached(self: StreamingClusters) -> np.ndarray:
        self._centres = None
        return original(self)

    def slow_extract(texts: list[str], n_tokens: np.ndarray | None = None) -> np.ndarray:
        tokens = np.zeros(len(texts)) if n_tokens is None else n_tokens
        return np.array([reference_descriptors(t, int(n)) for t, n in
                         zip(texts, tokens, strict=True)]).reshape(len(texts), N_DESCRIPTORS)

    monkeypatch.setattr(StreamingClusters, "centres", uncached)
    monkeypatch.setattr(MetadataTable, "update", reference_metadata_update)
    monkeypatch.setattr(CooccurrenceCounter, "_onehot", reference_onehot)
    monkeypatch.setattr("saewatch.state.descriptor_counts.extract_descriptors", slow_extract)
    slow = MonitorState(settings)
    for b in batches:
        slow.update(b)
    same(fast.snapshot(), slow.snapshot())
