"""``saewatch`` daemons as processes: configs, start, wait, kill -9, scrape (the app tests and
``benchmarks.quality.crash_trials``; fixtures live in ``tests/app/conftest.py``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from saewatch.datasets import alpaca_events
from saewatch.models import LLMEvent
from saewatch.state.snapshot import SnapshotStore
from tests.support.kafka import free_port

TINY_HOOK = "blocks.1.hook_resid_post"
STEP_TIMEOUT_S = 240


def pair_events(n_per_version: int) -> list[LLMEvent]:
    """v1 = gpt4_1106_preview on even prompts, v2 = its verbose variant on odd prompts."""
    v1 = alpaca_events("gpt4_1106_preview", version="v1", model_id="bot",
                     indices=range(0, 2 * n_per_version, 2))
    v2 = alpaca_events("gpt4_1106_preview_verbose", version="v2", model_id="bot",
                     indices=range(1, 2 * n_per_version, 2), start=v1[-1].timestamp)
    return v1 + v2


def write_config(
    path: Path, bootstrap: str, topic: str, dirs: tuple[Path, Path], **kafka: Any
) -> Path:
    """A daemon configuration on the tiny model/SAE, with its own port and snapshot folder."""
    config = {
        # A killed member stays in the group until its session times out; keep that short.
        "kafka": {"bootstrap_servers": [bootstrap], "topic": topic, "group_id": f"{topic}-g",
                  "max_poll_records": 16, "retry_backoff_s": 0.2, "retry_backoff_max_s": 2.0,
                  "session_timeout_ms": 6000} | kafka,
        "source": {"batch_size": 16, "poll_timeout_s": 0.2},
        # fp32: these tests compare counts exactly across processes and batchings, and bf16
        # autocast's rounding changes a TopK choice with the batch a text is encoded in.
        "encode": {"model": str(dirs[0]), "sae": {"path": str(dirs[1])}, "device": "cpu",
                   "max_tokens_per_text": 32, "precision": "fp32"},
        "state": {"snapshot_dir": str(path.parent / f"{path.stem}-snapshots"),
                  "snapshot_interval_s": 0.3},
        "diff": {"interval_s": 1.0},
        "web": {"listen_address": f"127.0.0.1:{free_port()}"},
        "log_level": "INFO",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def snapshots_of(config: Path) -> SnapshotStore:
    return SnapshotStore(config.parent / f"{config.stem}-snapshots")


# Every daemon a test starts; the conftest kills leftovers when the test ends, failed or not.
STARTED: list[subprocess.Popen[bytes]] = []


def start(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``saewatch <command> --config.file config`` in the background, output to ``log``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "saewatch", command, "--config.file", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    STARTED.append(proc)
    return proc


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def handled(store: SnapshotStore, topic: str) -> int:
    """Records of ``topic`` the latest snapshot accounts for."""
    try:
        latest = store.load_latest()
    except OSError:  # the daemon pruned the file between listing and reading: look again
        return handled(store, topic)
    if latest is None:
        return 0
    return sum(o for (t, _), o in latest.offsets.items() if t == topic)


def wait_for(condition: Callable[[], bool], procs: list[subprocess.Popen[bytes]],
             log: Path) -> None:
    """Poll ``condition`` while every process in ``procs`` stays alive."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not condition():
        for proc in procs:
            assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "no progress:\n" + log.read_text()[-4000:]
        time.sleep(0.1)


# A kill lands at a random moment after the state reached a random point of the stream, so it
# falls between checkpoints, mid-batch or mid-encode.
KILL_JITTER_S = (0.0, 0.6)


def kill_at(targets: list[int], config: Path, topic: str, log: Path,
            rng: random.Random) -> list[int]:
    """Per target: start the daemon, wait until its snapshot holds ``target`` records of
    ``topic``, wait a random jitter, kill -9. Returns the records held at each kill.

    A target the previous run already passed means a kill during start-up, which is a crash
    point too (and keeps the last kill before the end of a stream that is already published)."""
    store = snapshots_of(config)
    progress: list[int] = []
    for target in targets:
        proc = start("run", config, log)
        wait_for(lambda t=target: handled(store, topic) >= t, [proc], log)
        time.sleep(rng.uniform(*KILL_JITTER_S))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        progress.append(handled(store, topic))
    return progress


# A sample's name and its sorted labels, e.g. ("saewatch_state_records", (("outcome", "invalid"),)).
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def scrape(config: Path) -> dict[SampleKey, float]:
    """Every sample on the /metrics page of the daemon of ``config``."""
    address = yaml.safe_load(config.read_text())["web"]["listen_address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def serving(config: Path) -> bool:
    """True once the daemon of ``config`` answers /-/healthy (its signal handlers are set)."""
    address = yaml.safe_load(config.read_text())["web"]["listen_address"]
    try:
        with urllib.request.urlopen(f"http://{address}/-/healthy", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
