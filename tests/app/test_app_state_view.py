"""The app serves its API from the frozen state view: a request never waits for the consumer."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from saewatch.app import App
from saewatch.config import load_settings
from saewatch.encode.encoder import SAEEncoder
from saewatch.models.cards import FeatureCard, FeatureCards
from tests.support.app import pair_events
from tests.support.kafka import free_port

N_PER_VERSION = 12


def _get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return response.status, json.loads(response.read())


def _wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the app did not get there in time"
        time.sleep(0.05)


def test_the_api_answers_while_the_consumer_holds_the_state(
    tmp_path: Path, tiny_encoder_factory: Callable[[], SAEEncoder], replay_file
) -> None:
    port = free_port()
    # Cards of the tiny SAE (256 features): served once the app knows its encoder.
    cards = tmp_path / "cards.json.gz"
    FeatureCards(d_sae=256, cards=[FeatureCard(feature=3, label="tiny three", density=0.1)]
                 ).save(cards)
    settings = load_settings(
        None,
        encode={"cards_path": cards},
        source={"kind": "file", "path": replay_file(pair_events(N_PER_VERSION), []),
                "batch_size": 8, "poll_timeout_s": 0.05},
        state={"snapshot_dir": tmp_path / "snap", "snapshot_interval_s": 0.05},
        diff={"min_documents": 10, "interval_s": 0.05},
        web={"listen_address": f"127.0.0.1:{port}"},
    )
    app = App(settings, encoder_factory=tiny_encoder_factory, stop_when_exhausted=False)
    runner = threading.Thread(target=app.run, name="app", daemon=True)
    runner.start()
    try:
        def all_counted() -> bool:
            view = app.reports.view
            return view is not None and sum(
                v.documents for v in view.version_counts() if v.field == "response"
            ) == 2 * N_PER_VERSION

        _wait_for(all_counted)
        assert app.state is not None
        url = f"http://127.0.0.1:{port}"
        # The consumer is stuck holding the live state's lock (its next diff or checkpoint
        # waits for it); the API answers from the published view all the same.
        with app.state._lock:
            started = time.monotonic()
            status, detail = _get(f"{url}/api/v1/features/3")
            _, hits = _get(f"{url}/api/v1/retrieve?features=3,5,7&limit=50")
            _, versions = _get(f"{url}/api/v1/versions")
            elapsed = time.monotonic() - started
        assert status == 200 and elapsed < 2.0, f"requests took {elapsed:.1f} s"
        assert {f["model_version"] for f in detail["frequencies"]} == {"v1", "v2"}
        assert detail["card"]["label"] == "tiny three"
        assert _get(f"{url}/api/v1/features/4")[1]["card"] is None  # no card for it
        assert {h["model_version"] for h in hits["items"]} <= {"v1", "v2"}
        assert {(v["model_version"], v["documents"]) for v in versions["items"]
                if v["field"] == "response"} == {("v1", N_PER_VERSION), ("v2", N_PER_VERSION)}
    finally:
        app.stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
