"""The encode stage: events -> sparse SAE feature codes of their prompt and response.

Build the offline default (SmolLM2-135M-Instruct + the shipped TopK SAE) in one call::

    from saewatch.config import EncodeSettings
    from saewatch.encode import SAEEncoder

    encoder = SAEEncoder.from_settings(EncodeSettings())
    batch = encoder.encode(events)  # FeatureBatch

Heavy dependencies (torch, transformers, sae-lens) load on first use of a re-exported name, so
importing :mod:`saewatch.encode.base` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SAEEncoder": "saewatch.encode.encoder",
    "EncoderHealth": "saewatch.encode.base",
    "ActivationReader": "saewatch.encode.reader",
    "FeatureLabels": "saewatch.encode.labels",
    "FeatureLabel": "saewatch.encode.labels",
    "load_labels": "saewatch.encode.labels",
    "load_sae": "saewatch.encode.sae",
    "load_language_model": "saewatch.encode.model",
    "parse_hook_name": "saewatch.encode.model",
    "HookPoint": "saewatch.encode.model",
    "PresenceThresholds": "saewatch.encode.presence",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'saewatch.encode' has no attribute {name!r}")
