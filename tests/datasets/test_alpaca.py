"""AlpacaEval outputs: the shipped sample, subset files, the search path, events, errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from saewatch.datasets import (
    DATA_DIR_ENV,
    SAMPLE_DIR,
    DatasetError,
    alpaca_events,
    alpaca_models,
    data_dir,
    data_dirs,
    read_alpaca,
)

TESTS_DATA = Path(__file__).resolve().parents[1] / "data"


def test_the_sample_ships_the_demo_pair_in_full_under_a_megabyte() -> None:
    assert alpaca_models(SAMPLE_DIR) == ["NullModel", "claude-2.1", "claude-2.1_concise"]
    files = list((SAMPLE_DIR / "alpaca_eval").glob("*.json.gz"))
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    for model in ("claude-2.1", "claude-2.1_concise"):
        rows = read_alpaca(model, SAMPLE_DIR)
        assert [r.index for r in rows] == list(range(805))
        assert all(r.output.strip() for r in rows[:50]) and rows[0].generator == model
    licence = (SAMPLE_DIR / "LICENSE").read_text()
    assert "CC BY-NC 4.0" in licence and "tatsu-lab/alpaca_eval" in licence
    assert "CC BY-NC 4.0" in (SAMPLE_DIR / "README.md").read_text()


def test_events_mirror_the_file() -> None:
    raw = read_alpaca("claude-2.1")
    events = alpaca_events("claude-2.1")
    assert len(events) == len(raw) == 805
    for i in (0, 400, 804):
        e = events[i]
        assert e.event_id == f"claude-2.1:{i}"
        assert e.model_version == "claude-2.1"
        assert e.model_id == "alpaca-eval"
        assert (e.prompt, e.response) == (raw[i].instruction, raw[i].output)
        assert e.timestamp == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
        assert e.metadata == {"source": "alpaca_eval", "dataset": raw[i].dataset}


def test_version_subset_shuffle_limit() -> None:
    a = alpaca_events(
        "claude-2.1", version="v2", model_id="support-bot", seed=3, limit=10, interval_s=60
    )
    b = alpaca_events(
        "claude-2.1", version="v2", model_id="support-bot", seed=3, limit=10, interval_s=60
    )
    assert a == b  # deterministic
    assert [e.event_id for e in a] != [f"v2:claude-2.1:{i}" for i in range(10)]  # shuffled
    assert all(e.event_id.startswith("v2:claude-2.1:") and e.model_version == "v2" for e in a)
    assert {e.model_id for e in a} == {"support-bot"}
    assert [e.timestamp - a[0].timestamp for e in a[:3]] == [
        timedelta(0),
        timedelta(minutes=1),
        timedelta(minutes=2),
    ]
    picked = alpaca_events("claude-2.1", indices=[5, 2, 9])
    assert [e.event_id for e in picked] == ["claude-2.1:5", "claude-2.1:2", "claude-2.1:9"]
    assert alpaca_events("claude-2.1", limit=0) == []


def test_same_prompts_across_models() -> None:
    base = alpaca_events("claude-2.1", indices=[7])[0]
    concise = alpaca_events("claude-2.1_concise", indices=[7])[0]
    assert base.prompt == concise.prompt and base.response != concise.response


def test_subset_files_keep_instruction_indices_and_the_search_path_ends_in_the_sample() -> None:
    # The suite's SAEWATCH_DATA_DIR (tests/conftest.py) is tests/data, then the sample.
    assert data_dirs() == [TESTS_DATA, SAMPLE_DIR] and data_dir() == TESTS_DATA
    assert {"gpt4_1106_preview", "claude-2.1", "NullModel"} <= set(alpaca_models())
    rows = read_alpaca("gpt4_1106_preview")
    assert [r.index for r in rows[:200]] == list(range(200)) and rows[-1].index > 200
    picked = alpaca_events("gpt4_1106_preview", indices=[rows[-1].index])[0]
    assert picked.event_id == f"gpt4_1106_preview:{rows[-1].index}"
    # Same instruction index, same prompt, in a subset file and in a full one.
    assert read_alpaca("gpt4_1106_preview")[7].instruction == read_alpaca("claude-2.1")[7].instruction


def test_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        DatasetError, match=r"no AlpacaEval outputs for model 'gpt5'.*known: .*claude-2.1"
    ):
        alpaca_events("gpt5")
    with pytest.raises(DatasetError, match="index 805 out of range: NullModel has no record 805"):
        alpaca_events("NullModel", indices=[805])
    with pytest.raises(DatasetError, match="index 300 out of range: Yi-34B-Chat has no record"):
        alpaca_events("Yi-34B-Chat", indices=[300])  # a subset file: the first 60 only
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match=f"is not a folder; point {DATA_DIR_ENV} at"):
        data_dir()
    monkeypatch.delenv(DATA_DIR_ENV)
    assert data_dirs() == [SAMPLE_DIR]
    with pytest.raises(DatasetError, match=f"only the shipped demo sample is here: set {DATA_DIR_ENV}"):
        read_alpaca("gpt4_1106_preview")


def test_data_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "alpaca_eval"
    folder.mkdir()
    items = [{"dataset": "d", "instruction": "Say hi", "output": "hi", "generator": "tiny"}]
    with gzip.open(folder / "tiny.json.gz", "wt") as fh:
        json.dump(items, fh)
    with gzip.open(folder / "broken.json.gz", "wt") as fh:
        json.dump([{"instruction": 1}], fh)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    assert alpaca_models() == ["NullModel", "broken", "claude-2.1", "claude-2.1_concise", "tiny"]
    assert [(e.prompt, e.response) for e in alpaca_events("tiny")] == [("Say hi", "hi")]
    with pytest.raises(DatasetError, match="record 0 lacks string 'instruction' and 'output'"):
        alpaca_events("broken")


def test_a_command_without_the_corpus_says_so_in_one_line(tmp_path: Path) -> None:
    """``saewatch export-events`` for a model outside the sample, with no data folder set."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "saewatch", "export-events", "--alpaca", "gpt4_1106_preview",
         "--output", str(tmp_path / "out.jsonl")],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert done.returncode == 2  # a setting to fix, like every configuration error
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("saewatch: no AlpacaEval outputs for model 'gpt4_1106_preview'")
    assert f"set {DATA_DIR_ENV} to the full corpus" in lines[0]
    sample = subprocess.run(
        [sys.executable, "-m", "saewatch", "export-events", "--alpaca", "claude-2.1_concise",
         "--limit", "3", "--output", str(tmp_path / "out.jsonl")],
        env=env, capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path,
    )
    assert sample.returncode == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
