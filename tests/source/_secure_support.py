"""Helpers of ``test_kafka_security.py``: the README's SASL_SSL block, configurations on the
secured broker, the daemon's HTTP surface and what a snapshot holds, as text to search."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from saewatch.config import StateSettings
from saewatch.state.monitor import MonitorState
from tests.support.app import snapshots_of, write_config
from tests.support.kafka import LocalBroker

README = Path(__file__).resolve().parents[2] / "README.md"
README_MARKER = "<!-- sasl-ssl-config:"
# What the README's block names: start.sh --secure's defaults (client port 9092, SASL_SSL + 2).
README_BOOTSTRAP = "127.0.0.1:9094"
README_SECRETS = ".cache/kafka/run-9092/secrets"


def readme_kafka(broker: LocalBroker) -> dict[str, Any]:
    """The ``kafka`` section of the README's SASL_SSL block, pointed at ``broker``."""
    text = README.read_text()
    after = text[text.index(README_MARKER):]
    block = re.search(r"```yaml\n(.*?)```", after, re.S)
    assert block is not None, "README: no ```yaml block after the sasl-ssl-config marker"
    raw = block.group(1)
    assert raw.count(README_BOOTSTRAP) == 1 and raw.count(README_SECRETS) == 2, raw
    raw = raw.replace(README_BOOTSTRAP, broker.sasl_ssl)
    raw = raw.replace(README_SECRETS, str(broker.secrets))
    kafka: dict[str, Any] = yaml.safe_load(raw)["kafka"]
    return kafka


def daemon_config(path: Path, broker: LocalBroker, topic: str, dirs: tuple[Path, Path],
                  kafka: dict[str, Any], log_level: str = "DEBUG") -> Path:
    """A daemon configuration (tests.support.app) with ``kafka`` merged in, at ``log_level``."""
    write_config(path, kafka["bootstrap_servers"][0], topic, dirs,
                 **{k: v for k, v in kafka.items() if k != "bootstrap_servers"})
    config = yaml.safe_load(path.read_text())
    config["log_level"] = log_level
    path.write_text(yaml.safe_dump(config))
    return path


def without_password(kafka: dict[str, Any]) -> dict[str, Any]:
    """``kafka`` with neither password set in the file: they come from the environment."""
    return {k: v for k, v in kafka.items() if k not in ("sasl_password_file", "ssl_password_file")}


def client_certificate(broker: LocalBroker) -> dict[str, Any]:
    """Mutual TLS settings: the broker's client certificate and its encrypted key."""
    assert (broker.secrets / "client.key").is_file(), "start.sh --secure made no client key " \
        "(openssl missing?)"
    return {"ssl_certfile": str(broker.secrets / "client.pem"),
            "ssl_keyfile": str(broker.secrets / "client.key")}


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:  # 4xx/5xx bodies count as what the API shows too
        return exc.code, exc.read().decode(errors="replace")


def api_bodies(config: Path) -> dict[str, str]:
    """GET every route of the daemon's OpenAPI document (and the document itself)."""
    address = yaml.safe_load(config.read_text())["web"]["listen_address"]
    base = f"http://{address}"
    status, doc_text = http_get(f"{base}/api/openapi.json")
    assert status == 200, doc_text
    bodies = {"/api/openapi.json": doc_text}
    for path, item in json.loads(doc_text)["paths"].items():
        if "get" not in item:
            continue
        url, query = path, []
        for param in item["get"].get("parameters", []):
            value = _example(param)
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", value)
            elif param.get("required"):
                query.append(f"{param['name']}={value}")
        url += "?" + "&".join(query) if query else ""
        bodies[url] = http_get(base + url)[1]
    return bodies


def _example(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") == "integer" or param["name"] in ("feature", "features"):
        return "0"
    return {"model_id": "bot", "version": "v1"}.get(param["name"], "x")


def snapshot_texts(directory: Path) -> dict[str, bytes]:
    """Every member of every snapshot file in ``directory``, decompressed."""
    out: dict[str, bytes] = {}
    for path in sorted(directory.glob("*")):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                out |= {f"{path.name}:{m}": archive.read(m) for m in archive.namelist()}
        elif path.is_file():
            out[path.name] = path.read_bytes()
    return out


def make_other_ca(directory: Path) -> Path:
    """A CA certificate (PEM) that did not sign the broker's: a wrong kafka.ssl_cafile."""
    store, pem = directory / "other-ca.p12", directory / "other-ca.pem"
    for args in (["-genkeypair", "-alias", "ca", "-keyalg", "EC", "-groupname", "secp256r1",
                  "-dname", "CN=some other CA", "-ext", "bc:c", "-validity", "2",
                  "-storetype", "PKCS12"],
                 ["-exportcert", "-rfc", "-alias", "ca", "-file", str(pem)]):
        subprocess.run(["keytool", "-J-Xmx64m", *args, "-keystore", str(store),
                        "-storepass", "other-ca-pass"], check=True, capture_output=True)
    return pem


def polled_every(seconds: float, read: Callable[[], int]) -> Callable[[], int]:
    """``read``, asked at most once per ``seconds`` (each call of it opens a Kafka client)."""
    last: list[tuple[float, int]] = []

    def cached() -> int:
        if not last or time.monotonic() - last[0][0] >= seconds:
            last[:] = [(time.monotonic(), read())]
        return last[0][1]

    return cached


def metrics_text(config: Path) -> str:
    address = yaml.safe_load(config.read_text())["web"]["listen_address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return response.read().decode()


def restored_state(config: Path) -> MonitorState:
    latest = snapshots_of(config).load_latest()
    assert latest is not None
    state = MonitorState(StateSettings())
    state.restore(latest.state)
    return state
