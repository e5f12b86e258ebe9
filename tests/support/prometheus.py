"""A real Prometheus server for tests: free loopback port, temporary storage, fast intervals.

Reusable outside the export tests (the end-to-end test through Kafka and the daemon)::

    with PrometheusServer(tmp_path, targets=["127.0.0.1:9108"], rule_files=[rules]) as prom:
        prom.wait_for_alert("SaewatchBehaviouralDrift", timeout=120)

``fast_rules`` copies the project's rule files with every ``for:`` shortened, so an alert that
needs 10 minutes in production fires within seconds in a test.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus" / "rules"
STARTUP_TIMEOUT_S = 60.0
T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_binary() -> str | None:
    """Path of the ``prometheus`` binary (Debian package), or ``None``."""
    return shutil.which("prometheus")


def fast_rules(dest: Path, for_duration: str = "2s", rules_dir: Path = RULES_DIR) -> list[Path]:
    """Copies of the project's rule files with every alert's ``for:`` set to ``for_duration``."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(rules_dir.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = for_duration
        out = dest / path.name
        out.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(out)
    return written


class PrometheusServer:
    """One ``prometheus`` process scraping ``targets`` as job ``job``.

    Parameters
    ----------
    workdir
        Holds the config, the TSDB and the log (``prometheus.log``).
    targets
        ``host:port`` of exporters.
    rule_files
        Rule files to load.
    interval
        Scrape and rule-evaluation interval.
    bearer_token
        Sent to the targets when they require one.
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        interval: str = "1s",
        job: str = "saewatch",
        bearer_token: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.targets = list(targets)
        self.rule_files = list(rule_files)
        self.interval = interval
        self.job = job
        self.bearer_token = bearer_token
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def _write_config(self) -> Path:
        scrape: dict[str, Any] = {
            "job_name": self.job,
            "scrape_interval": self.interval,
            "scrape_timeout": self.interval,
            "static_configs": [{"targets": self.targets}],
        }
        if self.bearer_token:
            scrape["authorization"] = {"type": "Bearer", "credentials": self.bearer_token}
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [scrape],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self) -> PrometheusServer:
        """Start the process and wait until ``/-/ready`` answers."""
        binary = prometheus_binary()
        if binary is None:
            raise FileNotFoundError("prometheus not on PATH; run `make system-deps`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self.port = free_port()
        cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.wait_until(self._ready, STARTUP_TIMEOUT_S, "Prometheus to become ready")
        logger.info("prometheus ready on %s (pid %d)", self.url, self._process.pid)
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"prometheus exited early:\n{self.log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP API -------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        return list(self.api("query", query=expr)["result"])

    def alerts(self, name: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), optionally filtered."""
        return [
            a
            for a in self.api("alerts")["alerts"]
            if (name is None or a["labels"].get("alertname") == name)
            and (state is None or a["state"] == state)
        ]

    def metric_names(self) -> set[str]:
        """Every metric name Prometheus holds (scraped and recorded)."""
        return set(self.api("label/__name__/values"))

    def rule_evaluations(self) -> dict[str, str]:
        """Last evaluation time (RFC 3339) of each rule group."""
        return {g["name"]: g["lastEvaluation"] for g in self.api("rules")["groups"]}

    def wait_for_alert(
        self, name: str, state: str = "firing", timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Wait until alert ``name`` is in ``state``; returns those alerts."""
        return self.wait_until(lambda: self.alerts(name, state), timeout, f"{name} {state}")

    @staticmethod
    def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
        """Poll ``check`` until it returns something truthy; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)
