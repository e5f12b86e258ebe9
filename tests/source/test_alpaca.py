"""The AlpacaEval loader: deterministic ids and timestamps, selection, data-dir discovery."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from saewatch.source.alpaca import DATA_DIR_ENV, alpaca_models, data_dir, load_alpaca, read_alpaca
from saewatch.source.exceptions import DatasetError


def test_events_mirror_the_file() -> None:
    raw = read_alpaca("gpt4_1106_preview")
    events = load_alpaca("gpt4_1106_preview")
    assert len(events) == len(raw) == 805
    for i in (0, 400, 804):
        e = events[i]
        assert e.event_id == f"gpt4_1106_preview:{i}"
        assert e.model_version == "gpt4_1106_preview"
        assert e.model_id == "alpaca-eval"
        assert (e.prompt, e.response) == (raw[i]["instruction"], raw[i]["output"])
        assert e.timestamp == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
        assert e.metadata == {"source": "alpaca_eval", "dataset": raw[i]["dataset"]}


def test_version_subset_shuffle_limit() -> None:
    a = load_alpaca(
        "claude-2.1", version="v2", model_id="support-bot", seed=3, limit=10, interval_s=60
    )
    b = load_alpaca(
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
    picked = load_alpaca("claude-2.1", indices=[5, 2, 9])
    assert [e.event_id for e in picked] == ["claude-2.1:5", "claude-2.1:2", "claude-2.1:9"]
    assert load_alpaca("claude-2.1", limit=0) == []


def test_same_prompts_across_models() -> None:
    base = load_alpaca("gpt4_1106_preview", indices=[7])[0]
    concise = load_alpaca("gpt4_1106_preview_concise", indices=[7])[0]
    assert base.prompt == concise.prompt and base.response != concise.response


def test_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        DatasetError, match=r"no AlpacaEval outputs for model 'gpt5'.*known: .*gpt4_1106_preview"
    ):
        load_alpaca("gpt5")
    with pytest.raises(DatasetError, match="index 805 out of range: NullModel has 805 records"):
        load_alpaca("NullModel", indices=[805])
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match=f"set {DATA_DIR_ENV}"):
        data_dir()


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
    assert alpaca_models() == ["broken", "tiny"]
    assert [(e.prompt, e.response) for e in load_alpaca("tiny")] == [("Say hi", "hi")]
    with pytest.raises(DatasetError, match="record 0 lacks string 'instruction' and 'output'"):
        load_alpaca("broken")
