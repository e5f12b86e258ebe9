"""Fixtures of the app tests: a small real encoder (tiny random Llama + TopK SAE, default
tokenizer) and JSONL replays built from the shared AlpacaEval data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from saewatch.config import EncodeSettings
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.model import load_default_tokenizer
from saewatch.encode.sae import LoadedSae, SaeExpectations
from saewatch.models import LLMEvent
from tests.support.app import TINY_HOOK, kill_leftovers
from tests.support.encode import TINY_HIDDEN, make_tiny_llama, make_topk_sae, save_tiny_model


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
        # fp32: the same codes on every CPU, as the exact-count tests need
        settings = EncodeSettings(device="cpu", max_tokens_per_text=48, precision="fp32")
        return SAEEncoder.from_parts(make_tiny_llama(len(tokenizer)), tokenizer, loaded,
                                     settings, "tiny")

    return build


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


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama (with the default tokenizer) and a TopK SAE saved as a user would bring them."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), TINY_HOOK)


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_leftovers()
