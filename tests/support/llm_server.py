"""A real OpenAI-compatible server for the LLM-label tests: ``transformers serve`` (FastAPI +
uvicorn, installed by ``make test`` through the dev extra ``transformers[serving]``) serving the
plain copy of the embedded SmolLM2-135M-Instruct on the CPU, on a free loopback port.

Offline: the model is the local folder saewatch keeps under its cache (written on first load of
the default model), the hub is never asked (``HF_HUB_OFFLINE=1``). Answers of a 135M model are
poor; the tests check the path (requests, parsing, scoring, serving), not the prose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from saewatch.config import LLMSettings
from tests.support.kafka import free_port

START_TIMEOUT_S = 420.0  # imports and model load; minutes on a loaded 2-core machine


def plain_default_model() -> Path:
    """The plain (safetensors) folder of the default model, written once if missing."""
    from saewatch.encode.default import DEFAULT_MODEL_NAME, cache_dir
    from saewatch.encode.model import load_language_model

    folder = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if not (folder / "config.json").is_file():
        load_language_model(None)  # dequantizes the GGUF and saves the plain copy
    return folder


class LocalLLMServer:
    """``transformers serve`` of one local model folder; :meth:`start`, :meth:`stop`."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model = model
        self.port = free_port()
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> LLMSettings:
        return LLMSettings(base_url=f"http://127.0.0.1:{self.port}/v1", model=str(self.model),
                           api_key_env=None, timeout_s=180.0, max_tokens=64)

    def start(self) -> None:
        executable = shutil.which("transformers", path=str(Path(sys.executable).parent))
        if executable is None:
            raise RuntimeError("the transformers CLI is missing from the venv: make test "
                               "installs transformers[serving] (the dev extra)")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                [executable, "serve", str(self.model), "--host", "127.0.0.1", "--port",
                 str(self.port), "--device", "cpu", "--dtype", "float32"],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({self._process.returncode}): "
                                   f"{self.log.read_text()[-2000:]}")
            if self._healthy():
                return
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"transformers serve not healthy after {START_TIMEOUT_S:.0f}s: "
                           f"{self.log.read_text()[-2000:]}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
