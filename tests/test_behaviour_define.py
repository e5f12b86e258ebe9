"""Defining a behaviour end to end: files, a real (tiny) encoder, the state, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saewatch.behaviours import apply_configured, define, read_examples
from saewatch.cli import main
from saewatch.config import BehaviourSpec, EncodeSettings, StateSettings
from saewatch.encode.encoder import SAEEncoder
from saewatch.errors import BehaviourInputError, ConfigError
from saewatch.state.behaviour_fit import NoSpecificFeatureError
from saewatch.state.behaviours import BehaviourError
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore
from saewatch.state.testing import make_batch
from tests.support.app import TINY_HOOK
from tests.support.encode import save_tiny_model, tiny_encoder

PIRATE = [f"Ahoy there, matey! Ye've asked a fine question {t}" for t in
          ("about ships", "on the sea", "of gold", "for rum", "at dawn")]


@pytest.fixture(scope="module")
def encoder() -> SAEEncoder:
    return tiny_encoder(TINY_HOOK, EncodeSettings(device="cpu", max_tokens_per_text=48,
                                                   precision="fp32"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("background")  # the demo background, encoded once


def state_settings(tmp_path: Path) -> StateSettings:
    return StateSettings(snapshot_dir=tmp_path / "snapshots", retrieval_capacity=1_000,
                         cluster_warmup_events=0)


def test_example_files_in_three_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.txt").write_text("first\nstill first\n---\nsecond\n")
    (tmp_path / "c.jsonl").write_text('"plain"\n{"text": "object"}\n')
    assert read_examples(tmp_path / "a.txt") == ["one", "two"]
    assert read_examples(tmp_path / "b.txt") == ["first\nstill first", "second"]
    assert read_examples(tmp_path / "c.jsonl") == ["plain", "object"]


@pytest.mark.parametrize(("name", "content", "says"), [
    ("missing.txt", None, "cannot read the examples file"),
    ("empty.txt", "\n\n", "holds no examples"),
    ("bad.jsonl", "{not json\n", "is not JSON"),
])
def test_bad_example_files_are_one_line_errors(tmp_path: Path, name: str, content: str | None,
                                               says: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(BehaviourInputError, match=says) as err:
        read_examples(path)
    assert "\n" not in str(err.value)


def test_define_fits_on_the_demo_background_and_scores_the_ring(
        tmp_path: Path, encoder: SAEEncoder, cache: Path) -> None:
    state = MonitorState(state_settings(tmp_path))
    events = [*PIRATE[:2], "The capital of France is Paris.", "Water boils at 100 C."]
    state.update(encoder.encode([e for e in _events(events)]))
    d = define(state, encoder, "pirate", PIRATE, cache=cache)
    assert d.features and d.example_recall >= 0.8 and d.background_rate <= 0.01
    assert d.background_source.startswith("demo sample")
    (total,) = [c for c in state.view().behaviour_counts if c.window == "all"]
    assert (total.documents, total.flagged) == (4, 2)  # retro-active: the two pirate events
    with pytest.raises(BehaviourError, match="exists already"):
        define(state, encoder, "pirate", PIRATE, cache=cache)
    with pytest.raises(BehaviourInputError, match="behaviour name"):
        define(state, encoder, "Bad Name", PIRATE, cache=cache)
    assert [b.name for b in state.behaviours()] == ["pirate"]


def test_examples_without_a_specific_feature_store_nothing(
        tmp_path: Path, encoder: SAEEncoder, cache: Path) -> None:
    state = MonitorState(state_settings(tmp_path))
    plain = ["The capital of France is Paris.", "Photosynthesis makes sugar from light.",
             "A triangle has three sides.", "Rust has a borrow checker.",
             "The Nile flows north."]
    with pytest.raises(NoSpecificFeatureError, match="give examples that share"):
        define(state, encoder, "nothing", plain, cache=cache)
    assert state.behaviours() == []


def test_configured_behaviours_are_fitted_once(tmp_path: Path, encoder: SAEEncoder,
                                               cache: Path) -> None:
    state = MonitorState(state_settings(tmp_path))
    specs = [BehaviourSpec(name="pirate", examples=PIRATE)]
    assert [d.name for d in apply_configured(state, encoder, specs, cache)] == ["pirate"]
    assert apply_configured(state, encoder, specs, cache) == []  # stored: kept as it is
    with pytest.raises(ConfigError, match=r"behaviours\['empty'\].*holds no examples"):
        (tmp_path / "empty.txt").write_text("")
        apply_configured(state, encoder, [BehaviourSpec(name="empty",
                                                        examples_file=tmp_path / "empty.txt")])


def test_cli_list_show_remove_and_a_bad_add(tmp_path: Path, encoder: SAEEncoder, cache: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    settings = state_settings(tmp_path)
    state = MonitorState(settings)
    state.update(make_batch([[1]], encoder.d_sae, encoder_id=encoder.encoder_id))
    define(state, encoder, "pirate", PIRATE, cache=cache)
    store = SnapshotStore(settings.snapshot_dir)
    store.save(state.snapshot(), {("llm-events", 0): 7})
    config = tmp_path / "saewatch.yaml"
    config.write_text(f"state:\n  snapshot_dir: {settings.snapshot_dir}\n")
    args = ["--config.file", str(config)]
    assert main(["behaviour", "list", *args]) == 0
    assert capsys.readouterr().out.startswith("pirate\tresponse\t5 examples")
    assert main(["behaviour", "show", "pirate", *args]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["examples"] == PIRATE and shown["counts"][0]["documents"] == 1
    assert main(["behaviour", "add", "other", "--examples", str(tmp_path / "nope.txt"),
                 *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read the examples file" in err
    assert main(["behaviour", "add", "pirate", "--examples", str(tmp_path / "nope.txt"),
                 *args]) == 1  # the file is read first: nothing loads, nothing is written
    assert len(store.paths()) == 1
    assert main(["behaviour", "remove", "pirate", *args]) == 0
    capsys.readouterr()
    latest = store.load_latest()
    assert latest is not None and latest.offsets == {("llm-events", 0): 7}
    assert latest.state["behaviours"]["definitions"] == []
    assert main(["behaviour", "remove", "pirate", *args]) == 1
    assert "no behaviour 'pirate'" in capsys.readouterr().err


def _events(texts: list[str]):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from saewatch.models import LLMEvent

    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    return [LLMEvent(event_id=f"e{i}", timestamp=t0 + timedelta(seconds=i), model_id="bot",
                     model_version="v1", prompt="hi", response=t) for i, t in enumerate(texts)]


def test_cli_add_encodes_fits_and_stores_with_the_offsets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:

    monkeypatch.setenv("SAEWATCH_CACHE_DIR", str(tmp_path / "cache"))
    model, sae = save_tiny_model(tmp_path / "tiny", TINY_HOOK)
    snapshots = tmp_path / "snapshots"
    config = tmp_path / "saewatch.yaml"
    config.write_text(
        f"encode: {{model: {model}, sae: {{path: {sae}}}, device: cpu, "
        f"max_tokens_per_text: 48, precision: fp32}}\nstate: {{snapshot_dir: {snapshots}}}\n")
    examples = tmp_path / "pirate.txt"
    examples.write_text("\n".join(PIRATE) + "\n")
    args = ["--config.file", str(config)]
    assert main(["behaviour", "add", "pirate", "--examples", str(examples), *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("behaviour pirate: ") and "stored in" in out
    latest = SnapshotStore(snapshots).load_latest()
    assert latest is not None and latest.offsets == {}
    (stored,) = latest.state["behaviours"]["definitions"]
    assert stored["examples"] == PIRATE and stored["features"]
    assert main(["behaviour", "add", "pirate", "--examples", str(examples), *args]) == 1
    assert "exists already" in capsys.readouterr().err
    assert len(SnapshotStore(snapshots).paths()) == 1  # the duplicate wrote nothing
