"""``saewatch encode-file`` end to end with the offline default (slow: loads the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saewatch.cli import main

pytestmark = pytest.mark.slow

EVENT = {
    "event_id": "e1",
    "timestamp": "2026-11-20T10:00:00Z",
    "model_id": "support-bot",
    "model_version": "v2",
    "prompt": "How do I reset my password?",
    "response": "Open Settings, choose Security, then click Reset password.",
}


def test_encode_file_writes_codes_and_reports_bad_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAEWATCH_ENCODE__MAX_TOKENS_PER_TEXT", "32")
    events = tmp_path / "events.jsonl"
    second = dict(EVENT, event_id="e2", response="")
    events.write_text(
        json.dumps(EVENT) + "\n" + '{"event_id": "broken"\n' + json.dumps(second) + "\n"
    )
    out = tmp_path / "codes.jsonl"
    code = main(["encode-file", "--input", str(events), "--output", str(out)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # a bad line is reported, the good events are still encoded
    assert summary["events"] == 2 and summary["invalid_lines"] == [2]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["event_id"] for r in rows] == ["e1", "e2"]
    assert rows[0]["response"]["n_tokens"] > 5 and rows[0]["response"]["indices"]
    assert rows[1]["response"] == {"indices": [], "values": [], "n_tokens": 0, "truncated": False}
    assert summary["top_features"]["response"][0]["label"]


def test_encode_file_needs_exactly_one_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode-file"]) == 1
    assert "exactly one of" in capsys.readouterr().err
