"""Shared helpers of the app tests (importable; fixtures live in conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encode"))

from saewatch.models import LLMEvent  # noqa: E402
from saewatch.source.alpaca import load_alpaca  # noqa: E402

TINY_HOOK = "blocks.1.hook_resid_post"


def pair_events(n_per_version: int) -> list[LLMEvent]:
    """v1 = gpt4_1106_preview on even prompts, v2 = its verbose variant on odd prompts."""
    v1 = load_alpaca("gpt4_1106_preview", version="v1", model_id="bot",
                     indices=range(0, 2 * n_per_version, 2))
    v2 = load_alpaca("gpt4_1106_preview_verbose", version="v2", model_id="bot",
                     indices=range(1, 2 * n_per_version, 2), start=v1[-1].timestamp)
    return v1 + v2
