"""MonitorState.view(): a frozen copy that answers like the live state and never changes after."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from saewatch.config import StateSettings, WindowSettings
from saewatch.models import FeatureBatch
from saewatch.state.monitor import MonitorState
from saewatch.state.testing import T0, make_batch
from saewatch.views import StateView, UnknownCountsError

SETTINGS = StateSettings(retrieval_capacity=150, cooccurrence_top_n=16, cluster_count=3,
                         cluster_dims=8, cluster_warmup_events=50, examples_per_feature=3,
                         windows=WindowSettings(bucket_seconds=60, windows={"10m": 600}))
D_SAE = 32


def batches(seed: int, n: int = 6, size: int = 40, versions: tuple[str, ...] = ("v0", "v1"),
            start: int = 0) -> list[FeatureBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        rows = [sorted(rng.choice(D_SAE, 4, replace=False).tolist()) for _ in range(size)]
        vals = [rng.uniform(0.1, 5, 4).round(2).tolist() for _ in range(size)]
        meta = [{"tenant": f"t{i % 2}"} for i in range(size)]
        out.append(make_batch(rows, D_SAE, version=versions[b % len(versions)], values=vals,
                              prompt_rows=rows, metadata=meta, start=start + b * size))
    return out


def filled(seed: int = 0) -> MonitorState:
    state = MonitorState(SETTINGS)
    for batch in batches(seed):
        state.update(batch)
    return state


def answers(q: MonitorState | StateView) -> dict:
    """Everything the API and the diff ask, as comparable plain values."""
    out: dict = {"versions": q.version_counts(), "clusters": q.cluster_shares({1: "one"})}
    for v in q.version_counts():
        for window in ("all", "10m"):
            c = q.counts(v.model_id, v.model_version, v.field, window)
            out[(v.model_version, v.field, window)] = (c.n_documents, c.fired.tolist(),
                                                       c.activation_sum.round(4).tolist())
    for feature in (1, 5, 17):
        out[("detail", feature)] = q.feature_detail(feature, labels={1: "one"})
        out[("retrieve", feature)] = q.retrieve([feature, 2], limit=50)
        out[("and", feature)] = q.retrieve([feature, 2], mode="and", model_version="v1")
        for version in ("v0", "v1"):
            out[("examples", feature, version)] = q.examples(feature, "m", version, "response", 3)
    return out


def test_a_view_answers_like_the_live_state() -> None:
    state = filled()
    view = state.view()
    assert answers(view) == answers(state)
    assert view.window_names() == ["all", "10m"]


def test_a_view_does_not_change_when_the_state_does() -> None:
    state = filled()
    view = state.view(now=T0)
    before = answers(view)
    # New events of both versions and of a new one: counts, windows, reservoirs, the retrieval
    # ring (capacity 150, so it wraps), co-occurrence and clusters all move.
    for batch in batches(seed=1, versions=("v1", "v2"), start=10_000):
        state.update(batch)
    assert answers(state) != before
    assert answers(view) == before
    assert view.taken_at == T0
    with pytest.raises(UnknownCountsError, match="v2"):
        view.counts("m", "v2", "response")


def test_a_view_survives_restore_and_merge_of_the_live_state() -> None:
    state = filled()
    view = state.view()
    before = answers(view)
    state.merge(filled(seed=3))
    state.restore(filled(seed=4).snapshot())
    assert answers(view) == before


def test_the_views_arrays_are_read_only() -> None:
    view = filled().view()
    counts = view.counts("m", "v0", "response")
    with pytest.raises(ValueError, match="read-only"):
        counts.fired[0] = 7
    with pytest.raises(ValueError, match="read-only"):
        counts.activation_sum += 1
    with pytest.raises(AttributeError):
        view.versions = ()  # type: ignore[misc]


def test_the_view_of_an_empty_state_is_empty() -> None:
    view = MonitorState(SETTINGS).view()
    assert view.version_counts() == [] and view.retrieve([1]) == []
    assert view.cluster_shares() == [] and view.examples(1, "m", "v1", "response") == []
    assert view.feature_detail(1).frequencies == ()
    with pytest.raises(UnknownCountsError):
        view.counts("m", "v1", "response")


def test_taking_a_view_does_not_change_the_state() -> None:
    state, twin = filled(), filled()
    state.view()
    for batch in batches(seed=2, start=5_000):
        state.update(batch)
        twin.update(batch)
    assert answers(state) == answers(twin)


def test_a_view_is_read_while_the_live_state_is_locked() -> None:
    state = filled()
    view = state.view()
    got: list = []
    with state._lock:  # the consumer in the middle of an update
        reader = threading.Thread(target=lambda: got.append(answers(view)))
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive() and got
