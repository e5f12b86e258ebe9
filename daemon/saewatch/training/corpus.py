"""The SAE training corpus: AlpacaEval outputs split into training and held-out texts.

The outputs are read by :mod:`saewatch.datasets` (``$SAEWATCH_DATA_DIR``; training needs the
full corpus, the shipped demo sample has three models only). Each
``alpaca_eval/<model>.json.gz`` holds the same 805 instructions answered by one model.

The default SAE is trained on prompts and responses of :data:`TRAIN_EXCLUDED_MODELS`' complement,
restricted to training instructions; every instruction whose index is a multiple of
:data:`HELD_OUT_EVERY` and every excluded model stay unseen for evaluation and tests.

>>> is_held_out_instruction(0), is_held_out_instruction(7)
(True, False)
"""

from __future__ import annotations

import logging
from pathlib import Path

from saewatch.datasets import DATA_DIR_ENV, DatasetError, alpaca_models, data_dir, read_alpaca

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


def is_held_out_instruction(index: int) -> bool:
    """Whether instruction ``index`` is kept out of SAE training."""
    return index % HELD_OUT_EVERY == 0


def training_texts(root: Path | None = None) -> tuple[list[str], list[str]]:
    """Training prompts (unique instructions) and responses of the training models."""
    models = [m for m in alpaca_models(root) if m not in TRAIN_EXCLUDED_MODELS]
    if not models:
        raise DatasetError(
            f"no training models in {root or data_dir()} (the shipped demo sample holds only "
            f"held-out ones): set {DATA_DIR_ENV} to the full AlpacaEval corpus")
    prompts: list[str] = []
    responses: list[str] = []
    for k, model in enumerate(models):
        for row in read_alpaca(model, root):
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
        rows = [r for r in read_alpaca(model, root) if is_held_out_instruction(r.index)]
        texts.extend(r.output for r in rows[:per_model] if r.output.strip())
    return texts
