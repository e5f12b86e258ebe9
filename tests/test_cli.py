"""The command line: exit 2 with a message on configuration errors; produce/export/consume work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saewatch.cli import EXIT_CONFIG, main
from saewatch.models import LLMEvent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SAEWATCH_") and name != "SAEWATCH_DATA_DIR":
            monkeypatch.delenv(name)


def _saewatch(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "saewatch", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", ["consume", "produce", "check-config", "export-events"])
def test_invalid_config_file_exits_2_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("kafka:\n  max_poll_records: -1\nweb:\n  listen_address: nowhere\n")
    extra = ["--alpaca", "NullModel"] if command in ("produce", "export-events") else []
    assert main([command, "--config.file", str(path), *extra]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"saewatch: invalid configuration in {path} (2 problem(s)):")
    assert "kafka.max_poll_records: Input should be greater than or equal to 1" in err
    assert "web.listen_address 'nowhere': expected HOST:PORT" in err


def test_invalid_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAEWATCH_KAFKA__AUTO_OFFSET_RESET", "middle")
    assert main(["consume"]) == EXIT_CONFIG
    assert (
        "kafka.auto_offset_reset: Input should be 'earliest' or 'latest'" in capsys.readouterr().err
    )


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consume", "--config.file", str(tmp_path / "nope.yml")]) == EXIT_CONFIG
    assert "nope.yml not found (--config.file)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["produce"], "give exactly one of --alpaca MODEL or --file PATH"),
        (["produce", "--alpaca", "NullModel", "--file", "x.jsonl"], "give exactly one of"),
        (["produce", "--alpaca", "gpt5"], "no AlpacaEval outputs for model 'gpt5'"),
        (["produce", "--file", "/nonexistent/e.jsonl"], "cannot read /nonexistent/e.jsonl"),
        (["export-events", "--alpaca", "gpt5"], "no AlpacaEval outputs for model 'gpt5'"),
    ],
)
def test_bad_input_exits_2_before_connecting(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == EXIT_CONFIG
    assert message in capsys.readouterr().err


def test_export_events_writes_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "events.jsonl"
    args = [
        "export-events",
        "--alpaca",
        "claude-2.1_verbose",
        "--version",
        "v9",
        "--limit",
        "4",
        "--seed",
        "5",
    ]
    assert main([*args, "--output", str(out)]) == 0
    events = [LLMEvent.model_validate_json(line) for line in out.read_text().splitlines()]
    assert len(events) == 4 and {e.model_version for e in events} == {"v9"}
    capsys.readouterr()
    assert main(args) == 0  # the same, on standard output
    assert capsys.readouterr().out == out.read_text()


def test_consume_a_file_prints_the_accounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "e.jsonl"
    assert (
        main(["export-events", "--alpaca", "NullModel", "--limit", "6", "--output", str(path)]) == 0
    )
    with path.open("ab") as fh:
        fh.write(b"{oops\n\xc3\x28\n")
    monkeypatch.setenv("SAEWATCH_SOURCE__KIND", "file")
    monkeypatch.setenv("SAEWATCH_SOURCE__PATH", str(path))
    monkeypatch.setenv("SAEWATCH_SOURCE__MAX_CHARS", "100")
    capsys.readouterr()
    assert main(["consume"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(
        "consumed=8 valid=6 invalid=2 (invalid_json=1 schema=0 encoding=1 oversize=0 encoder=0) truncated=6 "
    ), line
    assert line.endswith("stopped_by='end of input'")
    monkeypatch.delenv("SAEWATCH_SOURCE__KIND")
    monkeypatch.delenv("SAEWATCH_SOURCE__PATH")
    assert main(["consume", "--file", str(path)]) == 0  # the same replay, from the flag
    assert capsys.readouterr().out.strip() == line


def test_unreachable_broker_retries_then_exits_1(tmp_path: Path) -> None:
    env = {
        "SAEWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "SAEWATCH_KAFKA__REQUEST_TIMEOUT_MS": "1000",
        "SAEWATCH_KAFKA__RETRY_BACKOFF_S": "0.2",
    }
    done = _saewatch("consume", "--connect-timeout", "2", env=env)
    assert done.returncode == 1
    assert "Kafka broker at 127.0.0.1:1 unavailable" in done.stderr  # logged retries
    assert "saewatch: no Kafka broker answered at 127.0.0.1:1 within 2s" in done.stderr


@pytest.mark.kafka
def test_produce_then_consume_through_the_cli(kafka_cluster) -> None:  # type: ignore[no-untyped-def]
    topic = f"cli-{os.urandom(5).hex()}"
    env = {"SAEWATCH_KAFKA_BOOTSTRAP": kafka_cluster.bootstrap}
    produced = _saewatch(
        "produce",
        "--alpaca",
        "gpt4_1106_preview_concise",
        "--limit",
        "30",
        "--topic",
        topic,
        "--partitions",
        "2",
        "--no-progress",
        env=env,
    )
    assert produced.returncode == 0, produced.stderr
    assert re.fullmatch(rf"produced 30 events to {topic} \[0\]=\d+ \[1\]=\d+\n", produced.stdout)
    kafka_cluster.produce_raw(topic, [(b"k", b"not json"), (b"k", b'{"event_id": 1}')])
    group = f"g-{topic}"
    consumed = _saewatch("consume", "--topic", topic, "--group", group, "--idle-exit", "5", env=env)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.startswith(
        "consumed=32 valid=30 invalid=2 (invalid_json=1 schema=1 encoding=0 oversize=0 encoder=0) truncated=0 "
        "dead_lettered=2 "
    ), consumed.stdout
    assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)
    assert len(kafka_cluster.read_topic(f"{topic}.dlq")) == 2


@pytest.mark.kafka
def test_sigterm_finishes_commits_and_accounts(kafka_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    topic = kafka_cluster.create_topic(partitions=1)
    events = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "timestamp": "2026-11-20T10:00:00Z",
                "model_id": "m",
                "model_version": "v",
                "prompt": "p",
                "response": "r",
            }
        ).encode()
        for i in range(50)
    ]
    kafka_cluster.produce_raw(topic, [(None, e) for e in events])
    group = f"g-{topic}"
    log = (tmp_path / "stderr.log").open("w+")  # a file, not a pipe: nobody drains it meanwhile
    proc = subprocess.Popen(
        [sys.executable, "-m", "saewatch", "consume", "--topic", topic, "--group", group],
        env=os.environ | {"SAEWATCH_KAFKA_BOOTSTRAP": kafka_cluster.bootstrap},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while kafka_cluster.committed(group, topic) != {0: 50}:
            assert proc.poll() is None and time.monotonic() < deadline, "consume did not commit"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    err = log.read()
    log.close()
    assert proc.returncode == 0, err
    assert out.startswith("consumed=50 valid=50 invalid=0 "), out
    assert out.rstrip().endswith("stopped_by='stop flag'")
    assert "finishing the batch in hand" in err
