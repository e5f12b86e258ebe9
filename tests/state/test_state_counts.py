"""Cumulative counts: hand-computed numbers, merge = sum, encoder checks, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from saewatch.config import StateSettings
from saewatch.state.counts import FeatureCounter, select_rows
from saewatch.state.exceptions import EncoderMismatchError, InvalidCodesError, UnknownKeyError
from saewatch.state.monitor import MonitorState
from saewatch.state.testing import make_batch


def test_counts_fired_and_activation_sums_by_hand() -> None:
    counter = FeatureCounter(d_sae=5)
    counter.update(make_batch([[0, 3], [3], [], [1, 3]], 5, values=[[1.0, 0.5], [2.0], [], [4.0, 0.25]]))
    c = counter.counts("m", "v1", "response")
    assert c.n_documents == 4
    assert c.fired.tolist() == [1, 1, 0, 3, 0]
    assert c.activation_sum.tolist() == [1.0, 4.0, 0.0, 2.75, 0.0]
    assert c.frequency().tolist() == [0.25, 0.25, 0.0, 0.75, 0.0]


def test_counts_are_kept_per_version_and_field() -> None:
    counter = FeatureCounter(d_sae=3)
    counter.update(make_batch([[0]], 3, version="a", prompt_rows=[[2]]))
    counter.update(make_batch([[1], [1]], 3, version="b"))
    assert counter.counts("m", "a", "prompt").fired.tolist() == [0, 0, 1]
    assert counter.counts("m", "b", "response").fired.tolist() == [0, 2, 0]
    assert [(v.model_version, v.field, v.documents) for v in counter.version_counts()] == [
        ("a", "prompt", 1), ("a", "response", 1), ("b", "prompt", 2), ("b", "response", 2)]
    with pytest.raises(UnknownKeyError, match="version_counts"):
        counter.counts("m", "c", "response")


def test_merge_equals_counting_everything_once() -> None:
    rng = np.random.default_rng(0)
    rows = [sorted(rng.choice(50, size=rng.integers(0, 8), replace=False).tolist())
            for _ in range(200)]
    whole, left, right = FeatureCounter(50), FeatureCounter(50), FeatureCounter(50)
    whole.update(make_batch(rows, 50))
    left.update(make_batch(rows[:120], 50))
    right.update(make_batch(rows[120:], 50, start=120))
    left.merge(right)
    a, b = whole.counts("m", "v1", "response"), left.counts("m", "v1", "response")
    assert a.n_documents == b.n_documents == 200
    np.testing.assert_array_equal(a.fired, b.fired)
    np.testing.assert_allclose(a.activation_sum, b.activation_sum)
    assert whole.version_counts() == left.version_counts()


def test_snapshot_restore_and_pickle_round_trip() -> None:
    counter = FeatureCounter(4)
    counter.update(make_batch([[1, 2], [2]], 4))
    restored = FeatureCounter(4)
    restored.restore(counter.snapshot())
    unpickled = pickle.loads(pickle.dumps(counter))
    for other in (restored, unpickled):
        assert other.counts("m", "v1", "response").fired.tolist() == [0, 1, 2, 0]
        assert other.version_counts() == counter.version_counts()


def test_select_rows_gathers_csr_rows() -> None:
    indptr = np.array([0, 2, 2, 5])
    idx, val = select_rows(indptr, np.array([1, 2, 3, 4, 5]), np.arange(5.0), np.array([2, 0]))
    assert idx.tolist() == [3, 4, 5, 1, 2] and val.tolist() == [2.0, 3.0, 4.0, 0.0, 1.0]


def test_state_refuses_a_different_encoder_or_width() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=100))
    state.update(make_batch([[1]], 8, encoder_id="enc-a"))
    with pytest.raises(EncoderMismatchError, match="enc-b"):
        state.update(make_batch([[1]], 8, encoder_id="enc-b"))
    with pytest.raises(EncoderMismatchError, match="d_sae=16"):
        state.update(make_batch([[1]], 16, encoder_id="enc-a"))
    assert state.counts("m", "v1", "response").n_documents == 1  # nothing was half-applied


def test_state_fixed_at_construction_refuses_first_batch_of_other_encoder() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=100), encoder_id="enc-a", d_sae=8)
    with pytest.raises(EncoderMismatchError):
        state.update(make_batch([[1]], 8, encoder_id="enc-x"))


def test_feature_ids_outside_d_sae_are_refused_before_anything_is_counted() -> None:
    state = MonitorState(StateSettings(retrieval_capacity=100))
    with pytest.raises(InvalidCodesError, match="d_sae=4"):
        state.update(make_batch([[1], [4]], 4))
    assert state.version_counts() == []
