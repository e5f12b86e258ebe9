"""Fixtures of the app tests: a small real encoder (tiny random Llama + TopK SAE, default
tokenizer) and JSONL replays built from the shared AlpacaEval data."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encode"))

from _encode_support import TINY_HIDDEN, make_tiny_llama, make_topk_sae  # noqa: E402

from saewatch.config import EncodeSettings  # noqa: E402
from saewatch.encode.encoder import SAEEncoder  # noqa: E402
from saewatch.encode.model import load_default_tokenizer  # noqa: E402
from saewatch.encode.sae import LoadedSae, SaeExpectations  # noqa: E402
from saewatch.models import LLMEvent  # noqa: E402
from saewatch.source.alpaca import load_alpaca  # noqa: E402

TINY_HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="session")
def tiny_encoder_factory() -> Callable[[], SAEEncoder]:
    """Builds the same tiny encoder every time (seeded), as a restarted daemon would."""
    tokenizer = load_default_tokenizer()

    def build() -> SAEEncoder:
        loaded = LoadedSae(
            sae=make_topk_sae(TINY_HIDDEN, 256, 8, TINY_HOOK),
            hook_name=TINY_HOOK,
            sae_id="random-topk",
            directory=None,
            expectations=SaeExpectations(0.0, None, "test"),
        )
        settings = EncodeSettings(device="cpu", max_tokens_per_text=48)
        return SAEEncoder.from_parts(make_tiny_llama(len(tokenizer)), tokenizer, loaded,
                                     settings, "tiny")

    return build


def pair_events(n_per_version: int) -> list[LLMEvent]:
    """v1 = gpt4_1106_preview on even prompts, v2 = its verbose variant on odd prompts."""
    v1 = load_alpaca("gpt4_1106_preview", version="v1", model_id="bot",
                     indices=range(0, 2 * n_per_version, 2))
    v2 = load_alpaca("gpt4_1106_preview_verbose", version="v2", model_id="bot",
                     indices=range(1, 2 * n_per_version, 2), start=v1[-1].timestamp)
    return v1 + v2


@pytest.fixture
def replay_file(tmp_path: Path) -> Callable[[list[LLMEvent], list[bytes]], Path]:
    """Writes events (and raw poison lines, spread through the file) as JSONL."""

    def write(events: list[LLMEvent], poison: list[bytes]) -> Path:
        lines = [e.model_dump_json().encode() for e in events]
        step = max(1, len(lines) // (len(poison) + 1))
        for i, bad in enumerate(poison):
            lines.insert((i + 1) * step + i, bad)
        path = tmp_path / "events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        return path

    return write
