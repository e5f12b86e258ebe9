"""The shared AlpacaEval corpus: finding it, reading a model's outputs, the train/held-out split.

The data lives outside the repository, in ``../shared/data`` relative to the project root, or
wherever ``$SAEWATCH_DATA_DIR`` points. Each ``alpaca_eval/<model>.json.gz`` holds the same 805
instructions answered by one model.

The default SAE is trained on prompts and responses of :data:`TRAIN_EXCLUDED_MODELS`' complement,
restricted to training instructions; every instruction whose index is a multiple of
:data:`HELD_OUT_EVERY` and every excluded model stay unseen for evaluation and tests.

>>> is_held_out_instruction(0), is_held_out_instruction(7)
(True, False)
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from saewatch.encode.exceptions import EncodeError
from saewatch.models import LLMEvent

logger = logging.getLogger(__name__)

HELD_OUT_EVERY = 5  # instruction index % 5 == 0: 161 of 805 instructions never seen in training
# Models kept out of SAE training: the verbose/concise/DPO pairs the semantics tests and demo
# compare, and a few ordinary models for held-out evaluation.
TRAIN_EXCLUDED_MODELS = frozenset(
    {
        "gpt4_1106_preview",
        "gpt4_1106_preview_concise",
        "gpt4_1106_preview_verbose",
        "claude-2.1",
        "claude-2.1_concise",
        "claude-2.1_verbose",
        "Mistral-7B-Instruct-v0.2",
        "Snorkel-Mistral-PairRM-DPO",
        "NullModel",
        "gpt-4o-2024-05-13",
        "llama-2-13b-chat-hf",
        "Yi-34B-Chat",
    }
)
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AlpacaRow:
    """One instruction answered by one model."""

    index: int
    instruction: str
    output: str
    generator: str


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$SAEWATCH_DATA_DIR``, else ``../shared/data`` next to the project root."""
    env = os.environ if environ is None else environ
    if env.get("SAEWATCH_DATA_DIR"):
        return Path(env["SAEWATCH_DATA_DIR"])
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def alpaca_models(root: Path | None = None) -> list[str]:
    """Names of the models with AlpacaEval outputs, sorted."""
    folder = (root or data_dir()) / "alpaca_eval"
    return sorted(p.name.removesuffix(".json.gz") for p in folder.glob("*.json.gz"))


def load_alpaca(model: str, root: Path | None = None) -> list[AlpacaRow]:
    """All 805 rows of one model's AlpacaEval outputs, in instruction order."""
    path = (root or data_dir()) / "alpaca_eval" / f"{model}.json.gz"
    if not path.is_file():
        raise EncodeError(
            f"no AlpacaEval outputs for {model!r} at {path}; set SAEWATCH_DATA_DIR to the "
            "folder holding alpaca_eval/"
        )
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = json.load(fh)
    return [
        AlpacaRow(i, str(r["instruction"]), str(r["output"] or ""), str(r.get("generator", model)))
        for i, r in enumerate(rows)
    ]


def is_held_out_instruction(index: int) -> bool:
    """Whether instruction ``index`` is kept out of SAE training."""
    return index % HELD_OUT_EVERY == 0


def alpaca_events(model: str, root: Path | None = None) -> Iterator[LLMEvent]:
    """A model's outputs as events (``model_id`` "alpaca_eval", version = the model)."""
    for row in load_alpaca(model, root):
        yield LLMEvent(
            event_id=f"{model}/{row.index}",
            timestamp=_EPOCH + timedelta(seconds=row.index),
            model_id="alpaca_eval",
            model_version=model.replace(" ", "_"),
            prompt=row.instruction,
            response=row.output,
        )


def training_texts(root: Path | None = None) -> tuple[list[str], list[str]]:
    """Training prompts (unique instructions) and responses of the training models."""
    models = [m for m in alpaca_models(root) if m not in TRAIN_EXCLUDED_MODELS]
    prompts: list[str] = []
    responses: list[str] = []
    for k, model in enumerate(models):
        for row in load_alpaca(model, root):
            if is_held_out_instruction(row.index):
                continue
            if k == 0:
                prompts.append(row.instruction)
            if row.output.strip():
                responses.append(row.output)
    logger.info(
        "training corpus: %d prompts, %d responses of %d models",
        len(prompts),
        len(responses),
        len(models),
    )
    return prompts, responses


def held_out_texts(root: Path | None = None, per_model: int = 40) -> list[str]:
    """Responses never seen in training: excluded models on held-out instructions."""
    texts: list[str] = []
    for model in sorted(TRAIN_EXCLUDED_MODELS - {"NullModel"}):
        rows = [r for r in load_alpaca(model, root) if is_held_out_instruction(r.index)]
        texts.extend(r.output for r in rows[:per_model] if r.output.strip())
    return texts
