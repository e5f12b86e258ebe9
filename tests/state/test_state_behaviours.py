"""Watched behaviours in the state: fitting, scoring, retro-active counts, snapshot/merge."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from saewatch.config import StateSettings, WindowSettings
from saewatch.models import SparseCodes
from saewatch.models.behaviours import BehaviourDefinition
from saewatch.state.behaviour_fit import (
    BehaviourFitError,
    NoSpecificFeatureError,
    fit_behaviour,
)
from saewatch.state.behaviours import BehaviourError
from saewatch.state.exceptions import EncoderMismatchError, IncompatibleStateError
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import T0, make_batch

D = 64
MARK = (60, 61, 62)  # the behaviour's features: rare in ordinary traffic


def ordinary(n: int, rng: np.random.Generator) -> list[list[int]]:
    return [sorted(rng.choice(50, size=6, replace=False).tolist()) for _ in range(n)]


def with_mark(rows: list[list[int]]) -> list[list[int]]:
    return [sorted({*r, *MARK}) for r in rows]


def codes(rows: list[list[int]]) -> SparseCodes:
    return SparseCodes.from_rows(rows, [[1.0] * len(r) for r in rows])


@pytest.fixture
def definition() -> BehaviourDefinition:
    rng = np.random.default_rng(0)
    return fit_behaviour("pirate", ["Ahoy"] * 5, codes(with_mark(ordinary(5, rng))),
                         codes(ordinary(400, rng)), D, "test-encoder")


def settings() -> StateSettings:
    return StateSettings(retrieval_capacity=1_000, cluster_warmup_events=0,
                         windows=WindowSettings(windows={"1h": 3_600}))


def test_fit_selects_the_examples_features_and_flags_them_only(
        definition: BehaviourDefinition) -> None:
    rng = np.random.default_rng(1)
    assert sorted(definition.features) == list(MARK)
    assert definition.example_recall == 1.0 and definition.background_rate == 0.0
    fresh, marked = codes(ordinary(500, rng)), codes(with_mark(ordinary(100, rng)))
    assert int(definition.flags(fresh).sum()) == 0
    assert int(definition.flags(marked).sum()) == 100


def test_counter_examples_veto_a_feature_they_share() -> None:
    rng = np.random.default_rng(2)
    examples = codes([sorted({*r, 60, 63}) for r in ordinary(5, rng)])
    counters = codes([sorted({*r, 63}) for r in ordinary(4, rng)])
    d = fit_behaviour("b", ["x"] * 5, examples, codes(ordinary(300, rng)), D, "e",
                      counter_codes=counters, counter_examples=["y"] * 4)
    assert d.features == (60,)
    assert not d.flags(counters).any()


def test_examples_without_a_specific_feature_are_refused_in_one_line() -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(NoSpecificFeatureError) as err:
        fit_behaviour("plain", ["x"] * 5, codes(ordinary(5, rng)), codes(ordinary(300, rng)),
                      D, "e")
    assert "\n" not in str(err.value) and "give examples" in str(err.value)
    with pytest.raises(BehaviourFitError, match="background events"):
        fit_behaviour("b", ["x"], codes(with_mark([[1]])), codes(ordinary(10, rng)), D, "e")


def test_a_new_behaviour_is_scored_over_the_ring_then_live(
        definition: BehaviourDefinition) -> None:
    rng = np.random.default_rng(4)
    state = MonitorState(settings())
    rows = ordinary(90, rng) + with_mark(ordinary(10, rng))
    state.update(make_batch(rows, D, version="v1"))
    state.define_behaviour(definition)  # retro-active over the 100 ring events
    view = state.view(now=T0)
    (total,) = [c for c in view.behaviour_counts if c.window == "all"]
    assert (total.model_version, total.documents, total.flagged) == ("v1", 100, 10)
    state.update(make_batch(with_mark(ordinary(5, rng)), D, version="v2", start=100))
    counts = {(c.model_version, c.window): (c.documents, c.flagged)
              for c in state.view().behaviour_counts}
    assert counts[("v2", "all")] == (5, 5) and counts[("v2", "1h")] == (5, 5)
    latest = state.view().behaviour_matches
    assert [m.event_id for m in latest[:2]] == ["e104", "e103"]


def test_duplicate_names_and_foreign_encoders_change_nothing(
        definition: BehaviourDefinition) -> None:
    state = MonitorState(settings())
    state.update(make_batch([[1]], D))
    state.define_behaviour(definition)
    before = state.snapshot()["behaviours"]
    with pytest.raises(BehaviourError, match="exists already"):
        state.define_behaviour(definition)
    with pytest.raises(EncoderMismatchError):
        state.define_behaviour(definition.model_copy(update={"name": "other",
                                                             "encoder_id": "another"}))
    assert state.snapshot()["behaviours"] == before
    state.remove_behaviour("pirate")
    assert state.behaviours() == [] and state.view().behaviour_counts == ()


def test_definitions_and_counts_survive_a_snapshot_round_trip(
        tmp_path, definition: BehaviourDefinition) -> None:
    rng = np.random.default_rng(5)
    state = MonitorState(settings())
    state.update(make_batch(ordinary(20, rng), D))
    state.define_behaviour(definition)
    state.update(make_batch(with_mark(ordinary(3, rng)), D, start=20))
    store = SnapshotStore(tmp_path)
    store.save(state.snapshot(), {("t", 0): 23})
    restored = MonitorState(settings())
    loaded = store.load_latest()
    assert loaded is not None
    restored.restore(loaded.state)
    assert restored.behaviours() == state.behaviours()
    assert restored.view().behaviour_counts == state.view().behaviour_counts
    restored.update(make_batch(with_mark(ordinary(1, rng)), D, start=23))
    (total,) = [c for c in restored.view().behaviour_counts if c.window == "all"]
    assert (total.documents, total.flagged) == (24, 4)


def test_replicas_merge_counts_and_refuse_two_definitions_of_a_name(
        definition: BehaviourDefinition) -> None:
    rng = np.random.default_rng(6)
    a, b = MonitorState(settings()), MonitorState(settings())
    for s in (a, b):
        s.update(make_batch([[1]], D, start=900 if s is b else 0))
        s.define_behaviour(definition)
    a.update(make_batch(with_mark(ordinary(2, rng)), D, start=1))
    b.update(make_batch(with_mark(ordinary(3, rng)), D, start=10,
                        times=[T0 + timedelta(minutes=i) for i in range(3)]))
    a.merge(b)
    (total,) = [c for c in a.view().behaviour_counts if c.window == "all"]
    assert (total.documents, total.flagged) == (7, 5)
    c = MonitorState(settings())
    c.update(make_batch([[1]], D))
    c.define_behaviour(definition.model_copy(update={"threshold": 9.0}))
    with pytest.raises(IncompatibleStateError, match="defined differently"):
        a.merge(c)


def test_an_older_snapshot_without_behaviours_restores_empty() -> None:
    state = MonitorState(settings())
    state.update(make_batch([[1]], D))
    old = state.snapshot()
    del old["behaviours"], old["background"]
    fresh = MonitorState(settings())
    fresh.restore(old)
    assert fresh.behaviours() == [] and len(fresh.background_codes("response")) == 0


def test_a_state_bound_before_its_first_event_gives_a_view(
        definition: BehaviourDefinition) -> None:
    """`saewatch behaviour add` on a fresh state binds it to the encoder with an empty batch."""
    state = MonitorState(settings())
    state.update(make_batch([], D))
    state.define_behaviour(definition)
    view = state.view(now=T0)
    assert [d.name for d in view.behaviours] == ["pirate"] and view.behaviour_counts == ()


# --- descriptors in the scorer ---------------------------------------------------------------

def _texts_with_tables(n: int, table: bool, rng: np.random.Generator) -> list[str]:
    words = ["answer", "detail", "point", "reason", "example", "option", "note"]
    out = []
    for _ in range(n):
        body = " ".join(rng.choice(words, size=int(rng.integers(20, 60))).tolist())
        out.append(f"| a | b |\n|---|---|\n| 1 | 2 |\n\n{body}" if table else body)
    return out


def test_a_descriptor_the_examples_stand_out_on_joins_the_scorer() -> None:
    """Examples that all carry a table while the feature mark is on 4 of 6 only: features
    alone miss two examples, so the ``tables`` descriptor joins and every example is flagged."""
    from saewatch.state.descriptors import extract_descriptors

    rng = np.random.default_rng(3)
    ex_texts, bg_texts = _texts_with_tables(6, True, rng), _texts_with_tables(400, False, rng)
    ex_codes = codes(with_mark(ordinary(4, rng)) + ordinary(2, rng))
    bg_codes = codes(ordinary(400, rng))
    plain = fit_behaviour("tables", ex_texts, ex_codes, bg_codes, D, "test-encoder")
    assert plain.descriptors == () and plain.example_recall < 1.0
    d = fit_behaviour("tables", ex_texts, ex_codes, bg_codes, D, "test-encoder",
                      example_descriptors=extract_descriptors(ex_texts),
                      background_descriptors=extract_descriptors(bg_texts))
    assert "tables" in d.descriptors and len(d.descriptor_weights) == len(d.descriptors)
    assert d.descriptor_weights[d.descriptors.index("tables")] > 0
    assert d.example_recall == 1.0 and d.background_rate == 0.0
    fresh_texts = _texts_with_tables(50, True, rng)
    marked = codes(ordinary(50, rng))  # no feature mark: the table alone must carry it
    with_table = extract_descriptors(fresh_texts)
    without = extract_descriptors(_texts_with_tables(50, False, rng))
    assert int(d.flags(marked, with_table).sum()) == 50
    # the same codes without the table score lower by the descriptor's term
    assert (d.scores(marked, without) < d.scores(marked, with_table)).all()
    # unknown descriptors (None, or NaN rows from older snapshots) count as the background's
    nan = np.full_like(with_table, np.nan)
    np.testing.assert_allclose(d.scores(marked, nan), d.scores(marked, None))


def test_no_descriptor_joins_when_the_features_suffice_or_nothing_stands_out(
        definition: BehaviourDefinition) -> None:
    from saewatch.state.descriptors import extract_descriptors

    rng = np.random.default_rng(4)
    tables = _texts_with_tables(5, True, rng)
    texts = _texts_with_tables(405, False, rng)
    # every example has the mark and a table: the features separate them alone
    d = fit_behaviour("marked", tables, codes(with_mark(ordinary(5, rng))),
                      codes(ordinary(400, rng)), D, "test-encoder",
                      example_descriptors=extract_descriptors(tables),
                      background_descriptors=extract_descriptors(texts[5:]))
    assert d.descriptors == () and d.example_recall == 1.0
    d = fit_behaviour("pirate", texts[:5], codes(with_mark(ordinary(5, rng))),
                      codes(ordinary(400, rng)), D, "test-encoder",
                      example_descriptors=extract_descriptors(texts[:5]),
                      background_descriptors=extract_descriptors(texts[5:]))
    assert d.descriptors == () and sorted(d.features) == list(MARK)


def test_background_descriptors_survive_a_snapshot_and_older_ones_restore_unknown() -> None:
    state = MonitorState(settings())
    rng = np.random.default_rng(5)
    texts = _texts_with_tables(10, True, rng)
    state.update(make_batch(ordinary(10, rng), d_sae=D, texts=texts))
    before = state.background_descriptors("response")
    assert before.shape == (10, 11) and (before[:, 7] == 1).all()  # one table each
    snap = state.snapshot()
    again = MonitorState(settings())
    again.restore(snap)
    np.testing.assert_array_equal(again.background_descriptors("response"), before)
    for field in ("prompt", "response"):
        del snap["background"][field]["descriptors"]  # as written before they were kept
    old = MonitorState(settings())
    old.restore(snap)
    assert np.isnan(old.background_descriptors("response")).all()
