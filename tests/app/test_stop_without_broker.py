"""A daemon asked to stop while it waits for a Kafka broker that is away stops cleanly.

``saewatch encode`` used to wait for the broker without the stop flag (its producer's connect),
so SIGTERM did nothing until the broker came back; ``saewatch run`` stopped with a traceback.
Now both exit 0 at once, saying they read nothing.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.app import start, write_config
from tests.support.kafka import free_port


@pytest.mark.parametrize("command", ["run", "encode"])
def test_sigterm_while_the_broker_is_away_is_a_clean_stop(
    command: str, tmp_path: Path, tiny_model_dirs: tuple[Path, Path]
) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    # A short bootstrap timeout: the first "unavailable, retrying" comes after one of them.
    config = write_config(tmp_path / "c.yaml", nobody, "llm-events", tiny_model_dirs,
                          request_timeout_ms=2_000)
    log = tmp_path / "daemon.log"
    proc = start(command, config, log)
    deadline = time.monotonic() + 240
    while "unavailable" not in log.read_text():  # it is waiting for the broker now
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text
    assert "stopped before the Kafka broker answered" in text
