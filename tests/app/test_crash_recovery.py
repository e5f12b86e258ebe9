"""kill -9 the daemon at random points while it consumes from the real broker: after restarts the
state counts every valid event exactly once (the snapshot's offsets are the source of truth)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _app_support import TINY_HOOK, pair_events
from _encode_support import TINY_HIDDEN, make_tiny_llama, make_topk_sae

from saewatch.config import StateSettings
from saewatch.encode.model import load_default_tokenizer
from saewatch.state.monitor import MonitorState
from saewatch.state.snapshot import SnapshotStore

pytestmark = pytest.mark.kafka

KILLS = 5
EVENTS_PER_VERSION = 100
POISON = [b"{broken", b'{"event_id": 1}', b"\xc3\x28 not utf-8", b"[]"]
# A kill lands at a random moment after the state reached a random point of the stream, so
# it falls between checkpoints, mid-batch or mid-encode.
KILL_JITTER_S = (0.0, 0.6)
STEP_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama (with the default tokenizer) and a TopK SAE saved as a user would bring them."""
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = load_default_tokenizer()
    make_tiny_llama(len(tokenizer)).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    make_topk_sae(TINY_HIDDEN, 256, 8, TINY_HOOK).save_model(str(root / "sae"))
    return root / "model", root / "sae"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, bootstrap: str, topic: str, dirs: tuple[Path, Path]) -> Path:
    config = {
        # A killed member stays in the group until its session times out; keep that short.
        "kafka": {"bootstrap_servers": [bootstrap], "topic": topic, "group_id": f"{topic}-g",
                  "max_poll_records": 16, "retry_backoff_s": 0.2, "retry_backoff_max_s": 2.0,
                  "session_timeout_ms": 6000},
        "source": {"batch_size": 16, "poll_timeout_s": 0.2},
        "encode": {"model": str(dirs[0]), "sae": {"path": str(dirs[1])}, "device": "cpu",
                   "max_tokens_per_text": 32},
        "state": {"snapshot_dir": str(tmp_path / "snapshots"), "snapshot_interval_s": 0.3},
        "diff": {"interval_s": 1.0},
        "web": {"listen_address": f"127.0.0.1:{_free_port()}"},
        "log_level": "INFO",
    }
    path = tmp_path / "saewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "saewatch", "run", "--config.file", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def _handled(store: SnapshotStore, topic: str) -> int:
    try:
        latest = store.load_latest()
    except OSError:  # the daemon pruned the file between listing and reading: look again
        return _handled(store, topic)
    if latest is None:
        return 0
    return sum(o for (t, _), o in latest.offsets.items() if t == topic)


def _wait_for(condition, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not condition():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the daemon made no progress:\n" + log.read_text()[-3000:]
        time.sleep(0.1)


def test_kill_9_at_random_points_loses_and_double_counts_nothing(
    tmp_path: Path, kafka_cluster, tiny_model_dirs: tuple[Path, Path]
) -> None:
    topic = kafka_cluster.create_topic(3, prefix="crash")
    events = pair_events(EVENTS_PER_VERSION)
    messages = [(e.event_id.encode(), e.model_dump_json().encode()) for e in events]
    messages += [(None, bad) for bad in POISON]
    random.Random(7).shuffle(messages)
    kafka_cluster.produce_raw(topic, messages)
    total = len(messages)
    config = _config(tmp_path, kafka_cluster.bootstrap, topic, tiny_model_dirs)
    store = SnapshotStore(tmp_path / "snapshots")
    log = tmp_path / "daemon.log"
    rng = random.Random(11)
    targets = sorted(rng.sample(range(1, total - total // 10), KILLS))
    progress = []
    for target in targets:
        proc = _start(config, log)
        _wait_for(lambda t=target: _handled(store, topic) >= t, proc, log)
        time.sleep(rng.uniform(*KILL_JITTER_S))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        progress.append(_handled(store, topic))
    assert progress[-1] < total, f"the stream ended before the last kill: {progress}"
    proc = _start(config, log)
    _wait_for(lambda: _handled(store, topic) >= total, proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]

    latest = store.load_latest()
    assert latest is not None
    assert latest.offsets == {(topic, p): end for p, end in kafka_cluster.end_offsets(topic).items()}
    state = MonitorState(StateSettings())
    state.restore(latest.state)
    documents = {(v.model_version, v.field): v.documents for v in state.version_counts()}
    expected = {(v, f): EVENTS_PER_VERSION for v in ("v1", "v2") for f in ("prompt", "response")}
    assert documents == expected, f"progress at kills: {progress}"
    dead = kafka_cluster.read_topic(f"{topic}.dlq")
    assert {r.value for r in dead} >= set(POISON)
