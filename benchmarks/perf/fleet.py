"""Running ``saewatch encode`` / ``saewatch aggregate`` processes for the scale-out benchmark:
their configuration file, start, readiness, progress read from the broker, clean stop.

Progress is read where the delivery contract puts it: an encoder commits its input offsets only
after its features messages are acknowledged, and the aggregator commits its features offsets
only after the snapshot holding them is written (:class:`saewatch.checkpoint.Checkpointer`), so
the aggregator group's committed offsets are its snapshot offsets.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.kafka import KafkaCluster, free_port

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0
STALLED_AFTER_S = 30.0
NO_PARTITIONS = "no partitions assigned"  # saewatch.app.Readiness's reason
SUBSCRIBED = "saewatch.source.kafka subscribed to"  # saewatch.source.kafka's log lines


class RoleError(RuntimeError):
    """A daemon process died or made no progress; the message holds its log's tail."""


@dataclass(frozen=True)
class Topology:
    """Topics and group of one scale-out configuration, and the per-process settings."""

    bootstrap: str
    events_topic: str
    features_topic: str
    group: str
    encode: dict[str, Any]
    batch_size: int
    snapshot_interval_s: float = 0.5

    @property
    def aggregate_group(self) -> str:
        return f"{self.group}-aggregate"  # the name saewatch.app.features_source uses


@dataclass
class Process:
    name: str
    config: Path
    popen: subprocess.Popen[bytes]
    log: Path
    log_start: int = 0  # where this launch's output begins in the (appended) log

    def subscribed(self) -> bool:
        """Its consumer is up and has subscribed (so it is waiting for partitions, not loading)."""
        with self.log.open("rb") as fh:
            fh.seek(self.log_start)
            return SUBSCRIBED in fh.read().decode(errors="replace")

    @property
    def address(self) -> str:
        return str(yaml.safe_load(self.config.read_text())["web"]["listen_address"])


@dataclass
class Fleet:
    """One aggregator and ``n`` encoders of a topology, logging into ``folder``."""

    topology: Topology
    folder: Path
    processes: list[Process] = field(default_factory=list)
    restarts: int = 0

    def start(self, n_encoders: int, cpu_threads: int) -> None:
        self.processes.append(self._spawn("aggregate", "aggregator", cpu_threads))
        for i in range(n_encoders):
            self.processes.append(self._spawn("encode", f"encoder{i}", cpu_threads))

    def wait_ready(self, timeout_s: float) -> float:
        """Wait until every process answers ``/-/ready`` at once; seconds it took.

        A process whose consumer has subscribed but has had no partition for
        ``STALLED_AFTER_S`` is restarted (every member must own one: at most 3 members share 6
        partitions, and a rebalance takes seconds): kafka-python sometimes joins the group
        before it has the topic's metadata, gets nothing assigned ("No partition metadata for
        topic"), and was seen to stay so for more than 5 minutes (dpkp/kafka-python#2377).
        """
        started = time.monotonic()
        stalled_since: dict[str, float] = {}
        deadline = started + timeout_s
        while True:
            reasons = {p.name: _readiness(p.address) for p in self.processes}
            if all(r == "ready" for r in reasons.values()):
                return time.monotonic() - started
            self.check_alive()
            if time.monotonic() > deadline:
                raise RoleError(f"not ready within {timeout_s:.0f}s: {reasons}")
            for i, p in enumerate(self.processes):
                if reasons[p.name] != NO_PARTITIONS or not p.subscribed():
                    stalled_since.pop(p.name, None)
                elif time.monotonic() - stalled_since.setdefault(p.name, time.monotonic()) \
                        > STALLED_AFTER_S:
                    self.processes[i] = self._restart(p)
                    stalled_since.pop(p.name)
            time.sleep(0.5)

    def _restart(self, process: Process) -> Process:
        logger.warning("%s has had no partitions for %.0fs (no topic metadata at its join): "
                       "restarting it", process.name, STALLED_AFTER_S)
        self.restarts += 1
        _terminate(process.popen)
        command = "aggregate" if process.name == "aggregator" else "encode"
        return Process(name=process.name, config=process.config, log=process.log,
                       log_start=process.log.stat().st_size,
                       popen=_launch(command, process.config, process.log))

    def check_alive(self) -> None:
        for p in self.processes:
            if p.popen.poll() is not None:
                raise RoleError(f"{p.name} exited with {p.popen.returncode}:\n{tail(p.log)}")

    def stop(self) -> list[int]:
        """SIGTERM to all (each finishes its batch and checkpoints); their exit codes."""
        for p in self.processes:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        # One SIGTERM only: a daemon restores the default handler once its loop is done, so a
        # second one would kill it in the middle of its clean shutdown.
        return [_await_exit(p.popen) for p in self.processes]

    @property
    def aggregator_snapshots(self) -> Path:
        return self.folder / "aggregator-snapshots"

    def _spawn(self, command: str, name: str, cpu_threads: int) -> Process:
        config = write_config(self.topology, self.folder / f"{name}.yaml", cpu_threads)
        log = self.folder / f"{name}.log"
        start = log.stat().st_size if log.exists() else 0
        return Process(name=name, config=config, popen=_launch(command, config, log), log=log,
                       log_start=start)


def write_config(topology: Topology, path: Path, cpu_threads: int) -> Path:
    """A daemon configuration: the topology's topics and group, its own port and snapshots."""
    config = {
        "kafka": {"bootstrap_servers": [topology.bootstrap], "topic": topology.events_topic,
                  "features_topic": topology.features_topic, "group_id": topology.group,
                  "session_timeout_ms": 10_000},
        "source": {"batch_size": topology.batch_size, "poll_timeout_s": 0.2},
        "encode": topology.encode | {"cpu_threads": cpu_threads},
        "state": {"snapshot_dir": str(path.parent / f"{path.stem}-snapshots"),
                  "snapshot_interval_s": topology.snapshot_interval_s},
        "web": {"listen_address": f"127.0.0.1:{free_port()}"},
        "log_level": "INFO",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def committed_total(cluster: KafkaCluster, group: str, topic: str) -> int:
    return sum(cluster.committed(group, topic).values())


def wait_until(condition: Callable[[], bool], fleet: Fleet, timeout_s: float,
               poll_s: float = 0.1) -> None:
    """Poll ``condition`` while the fleet stays alive; raise :class:`RoleError` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        fleet.check_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{tail(p.log)}" for p in fleet.processes)
            raise RoleError(f"no progress within {timeout_s:.0f}s:\n{logs}")
        time.sleep(poll_s)


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def _terminate(popen: subprocess.Popen[bytes]) -> int:
    """SIGTERM (finish the batch, checkpoint), SIGKILL after ``STOP_TIMEOUT_S``; exit code."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
    return _await_exit(popen)


def _await_exit(popen: subprocess.Popen[bytes]) -> int:
    try:
        return popen.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %.0fs: killing it", popen.pid, STOP_TIMEOUT_S)
        popen.kill()
        return popen.wait()


def _launch(command: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m saewatch <command> --config.file <config>``, output appended to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "saewatch", command, "--config.file", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def _readiness(address: str) -> str:
    """``"ready"``, the daemon's reason for not being ready, or ``"down"`` (not listening)."""
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=10) as response:
            return "ready" if response.status == 200 else "down"
    except urllib.error.HTTPError as exc:  # 503: the body says why
        return str(json.loads(exc.read() or b"{}").get("reason", "unavailable"))
    except (urllib.error.URLError, OSError, json.JSONDecodeError):
        return "down"


def stop_all(fleets: Sequence[Fleet]) -> None:
    for fleet in fleets:
        fleet.stop()
