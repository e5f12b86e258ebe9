"""POST/DELETE /api/v1/behaviours: applied by a loop thread with a real state and encoder."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from saewatch.behaviours import apply_change
from saewatch.config import EncodeSettings, StateSettings, WebSettings
from saewatch.export import ExporterServer, ReportHolder
from saewatch.export.web.behaviour_writes import BehaviourChanges
from saewatch.state.monitor import MonitorState
from tests.support.app import TINY_HOOK
from tests.support.encode import tiny_encoder

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
PIRATE = [f"Ahoy there, matey! Ye've asked a fine question {t}" for t in
          ("about ships", "on the sea", "of gold", "for rum", "at dawn")]


def send(url: str, method: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, MonitorState]]:
    """An exporter whose behaviour changes a loop thread applies with a tiny real encoder."""
    encoder = tiny_encoder(TINY_HOOK, EncodeSettings(device="cpu", max_tokens_per_text=48,
                                                     precision="fp32"))
    state = MonitorState(StateSettings(retrieval_capacity=1_000, cluster_warmup_events=0))
    changes, stop = BehaviourChanges(), threading.Event()

    def loop() -> None:
        while not stop.wait(0.05):
            changes.apply_all(lambda c: apply_change(state, encoder, c, tmp_path / "bg"))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    server = ExporterServer(WebSettings(listen_address="127.0.0.1:0", bearer_token=TOKEN),
                            CollectorRegistry(), ReportHolder(), behaviour_changes=changes)
    server.start()
    yield server.url + "/api/v1/behaviours", state
    server.stop()
    stop.set()
    thread.join()


def test_add_and_remove_over_http(daemon: tuple[str, MonitorState]) -> None:
    url, state = daemon
    assert send(url, "POST", {"name": "pirate", "examples": PIRATE})[0] == 401
    status, answer = send(url, "POST", {"name": "pirate", "examples": PIRATE}, AUTH)
    assert status == 201 and answer["message"].startswith("behaviour pirate: ")
    assert [d.name for d in state.behaviours()] == ["pirate"]
    status, answer = send(url, "POST", {"name": "pirate", "examples": PIRATE}, AUTH)
    assert (status, "exists already" in answer["detail"]) == (409, True)
    status, answer = send(url, "POST", {"name": "other"}, AUTH)
    assert status == 400 and '"examples"' in answer["detail"]
    assert send(url + "/pirate", "DELETE", headers=AUTH)[0] == 200
    assert state.behaviours() == []
    status, answer = send(url + "/pirate", "DELETE", headers=AUTH)
    assert status == 409 and "no behaviour 'pirate'" in answer["detail"]


def test_without_a_loop_the_change_is_refused(tmp_path: Path) -> None:
    server = ExporterServer(WebSettings(listen_address="127.0.0.1:0"), CollectorRegistry(),
                            ReportHolder())
    with server:
        status, answer = send(server.url + "/api/v1/behaviours", "POST",
                              {"name": "pirate", "examples": PIRATE},
                              {"Content-Type": "application/json"})
        doc = json.loads(urllib.request.urlopen(server.url + "/api/openapi.json").read())
    assert status == 503 and "saewatch behaviour add" in answer["detail"]
    assert "post" in doc["paths"]["/api/v1/behaviours"]
    assert "delete" in doc["paths"]["/api/v1/behaviours/{behaviour}"]
