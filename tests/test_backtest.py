"""``saewatch backtest`` end to end on real AlpacaEval responses with the default encoder.

One drift file (claude-2.1 vs claude-2.1_concise, 120 events each, interleaved, plus one broken
line) is encoded once; every later run reads the code cache, so the module stays near a minute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from saewatch.backtest import backtest_schema
from saewatch.cli import main
from saewatch.datasets import alpaca_events
from saewatch.source.file import write_events

REPO = Path(__file__).resolve().parents[1]
PER_VERSION = 120
EVERY = 30


def _write(path: Path, events: list[Any], broken_lines: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as out:
        write_events(events, out)
        out.write("not json\n" * broken_lines)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backtest")


@pytest.fixture(scope="module")
def drift_file(work: Path) -> Path:
    # Disjoint prompts per version, as in a canary: only the responses' model differs.
    v1 = alpaca_events("claude-2.1", version="v1", indices=range(0, 2 * PER_VERSION, 2))
    v2 = alpaca_events("claude-2.1_concise", version="v2",
                       indices=range(1, 2 * PER_VERSION, 2))
    return _write(work / "drift.jsonl", [e for pair in zip(v1, v2, strict=True) for e in pair],
                  broken_lines=1)


def _backtest(work: Path, events: Path, *extra: str) -> dict[str, Any]:
    out = work / f"{events.stem}-{len(list(work.glob('*.json')))}.json"
    code = main(["backtest", str(events), "--every", str(EVERY), "--out", str(out),
                 "--cache-dir", str(work / "cache"), *extra])
    assert code == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.fixture(scope="module")
def first_run(work: Path, drift_file: Path) -> dict[str, Any]:
    return _backtest(work, drift_file)


def test_the_concise_version_is_flagged_with_shorter_responses(first_run: dict[str, Any]) -> None:
    looks = first_run["looks"]
    # Both sides grow by 30 every 60 events: looks at 60, 120, 180 and 240 events.
    assert [lk["events_read"] for lk in looks] == [60, 120, 180, 240]
    assert looks[-1]["sides"]["alpaca-eval/v2/response"] == PER_VERSION
    assert [lk["final"] for lk in looks] == [False, False, False, True]
    # diff.min_documents (100) holds the verdict back until both sides have 120.
    assert [lk["verdict"] for lk in looks[:3]] == ["insufficient_data"] * 3
    first = first_run["first_drift"]
    assert first is not None and first["index"] == 3 and first == looks[3]
    assert "shorter" in first["headline"] and first["headline"].startswith("responses")
    latest = next(c for c in first_run["final"] if c["kind"] == "latest")
    assert latest["slug"] == "alpaca-eval/response/v1..v2"
    assert (latest["verdict"], latest["n_baseline"], latest["n_candidate"]) == ("drift", 120, 120)
    assert latest["top_down"] and latest["moved_descriptors"][0] == latest["headline"]
    stats = first_run["stats"]
    assert (stats["events_valid"], stats["events_invalid"]) == (240, 1)
    assert stats["invalid_by_reason"] == {"invalid_json": 1}
    assert (stats["texts_encoded"], stats["texts_cached"]) == (480, 0)


def test_the_output_follows_the_committed_schema(first_run: dict[str, Any]) -> None:
    committed = json.loads((REPO / "docs" / "backtest.schema.json").read_text())
    assert committed == json.loads(json.dumps(backtest_schema()))  # regenerate it if not
    jsonschema.validate(first_run, committed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**first_run, "looks": [{"index": "x"}]}, committed)


def test_a_rerun_with_other_diff_settings_reads_the_cache(
    first_run: dict[str, Any], work: Path, drift_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAEWATCH_DIFF__MIN_DOCUMENTS", "30")
    again = _backtest(work, drift_file)
    assert (again["stats"]["texts_encoded"], again["stats"]["texts_cached"]) == (0, 480)
    # With 30 documents enough, the alert fires at the first look already.
    assert again["first_drift"]["index"] == 0
    assert "shorter" in again["first_drift"]["headline"]


def test_one_model_split_in_two_never_drifts(
    first_run: dict[str, Any], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # claude-2.1's events of the drift file, alternately relabelled a and b: all cached texts.
    events = alpaca_events("claude-2.1", version="v1", indices=range(0, 2 * PER_VERSION, 2))
    split = [e.model_copy(update={"model_version": "ab"[i % 2]}) for i, e in enumerate(events)]
    monkeypatch.setenv("SAEWATCH_DIFF__MIN_DOCUMENTS", "30")
    result = _backtest(work, _write(work / "aa.jsonl", split))
    assert result["stats"]["texts_encoded"] == 0
    assert [lk["events_read"] for lk in result["looks"]] == [60, 120]
    assert [lk["verdict"] for lk in result["looks"]] == ["no_drift", "no_drift"]
    assert result["first_drift"] is None


def test_no_cache_leaves_the_cache_alone(tmp_path: Path, drift_file: Path) -> None:
    small = _write(tmp_path / "two.jsonl", alpaca_events("claude-2.1", limit=2))
    code = main(["backtest", str(small), "--no-cache", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "o.json")])
    result = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and not (tmp_path / "c").exists()
    assert (result["stats"]["texts_encoded"], result["stats"]["cache_dir"]) == (4, None)
    assert [lk["verdict"] for lk in result["looks"]] == ["insufficient_data"]


@pytest.mark.parametrize("content", [None, "not json\n{}\n"])
def test_a_missing_or_invalid_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "events.jsonl"
    if content is not None:
        path.write_text(content)
    assert main(["backtest", str(path), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("saewatch: ")
    assert ("does not exist" if content is None else "no valid event in 2 lines") in err
    assert "llm_event.schema.json" in err
