"""Interrupted SAE work resumes: sharded activation extraction and checkpointed training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerBase

from saewatch.encode.exceptions import TrainingError
from saewatch.encode.model import parse_hook_name
from saewatch.encode.reader import ActivationReader
from saewatch.models import TextField
from saewatch.training import activation_cache
from saewatch.training.activation_cache import ActivationCache, texts_key
from saewatch.training.train import TrainConfig, extract_activations, train_topk_sae
from tests.support.encode import make_tiny_llama

HOOK = "blocks.2.hook_resid_post"
TEXTS: list[tuple[str, TextField]] = [
    (f"Answer number {i}: the {w} is a fine thing to talk about today.", "response")
    for i, w in enumerate(["sea", "sky", "tree", "river", "stone", "cloud"] * 3)
]
METADATA: dict[str, object] = {"hook_name": HOOK, "model_name": "tiny"}


@pytest.fixture(scope="module")
def reader(tokenizer: PreTrainedTokenizerBase) -> ActivationReader:
    return ActivationReader(
        make_tiny_llama(len(tokenizer)), tokenizer, parse_hook_name(HOOK), device="cpu",
        precision="fp32",
    )


def test_sharded_extraction_equals_one_pass_and_resumes(
    reader: ActivationReader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activation_cache, "SHARD_TEXTS", 4)
    whole = extract_activations(reader, TEXTS, max_tokens=10**6)
    key = texts_key(TEXTS, "tiny", HOOK)
    # An "interrupted" run: a token budget that stops after the first shards.
    first = ActivationCache(tmp_path / "c", key).extract(reader, TEXTS, max_tokens=40)
    done = ActivationCache(tmp_path / "c", key).done_texts()
    assert 0 < done < len(TEXTS) and len(first.texts) == done
    # The rerun reads only the remaining texts and ends equal to one pass over all of them.
    calls: list[int] = []
    original = activation_cache.read_activations
    monkeypatch.setattr(
        activation_cache, "read_activations",
        lambda r, texts, offset, budget: calls.append(offset) or original(r, texts, offset, budget),
    )
    resumed = ActivationCache(tmp_path / "c", key).extract(reader, TEXTS, max_tokens=10**6)
    assert calls[0] == done
    np.testing.assert_allclose(resumed.acts.astype(np.float32), whole.acts.astype(np.float32),
                               atol=1e-3)
    assert resumed.token_ids.tolist() == whole.token_ids.tolist()
    assert resumed.doc_ids.tolist() == whole.doc_ids.tolist()
    assert resumed.texts == whole.texts
    assert len(list((tmp_path / "c").glob("shard-*.npz"))) == -(-len(TEXTS) // 4)


def test_a_cache_of_other_texts_is_refused(reader: ActivationReader, tmp_path: Path) -> None:
    ActivationCache(tmp_path / "c", texts_key(TEXTS, "a")).extract(reader, TEXTS[:2], 10**6)
    with pytest.raises(TrainingError, match="delete it"):
        ActivationCache(tmp_path / "c", texts_key(TEXTS, "b"))


class _Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(
    reader: ActivationReader, tmp_path: Path
) -> None:
    data = extract_activations(reader, TEXTS, max_tokens=10**6)
    config = TrainConfig(d_sae=32, k=4, batch_size=32, epochs=6, lr=3e-3, warmup_steps=3)
    straight = train_topk_sae(data.acts, config, METADATA)

    n_steps = int(6 * len(data.acts) / 32)
    assert n_steps > 30

    def stop(step: int, total: int, extra: dict[str, float]) -> None:
        if step >= 21:  # progress reports steps 1, 21, 41, ...
            raise _Interrupt

    ckpt = tmp_path / "train.pt"
    with pytest.raises(_Interrupt):  # checkpoint after every step (interval 0)
        train_topk_sae(data.acts, config, METADATA, progress=stop, checkpoint=ckpt,
                       checkpoint_every_s=0.0)
    assert torch.load(ckpt, weights_only=False)["step"] == 20
    resumed = train_topk_sae(data.acts, config, METADATA, checkpoint=ckpt)
    for name, tensor in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)
    other = TrainConfig(d_sae=32, k=8, batch_size=32, epochs=6, lr=3e-3, warmup_steps=3)
    with pytest.raises(TrainingError, match="another training run"):
        train_topk_sae(data.acts, other, METADATA, checkpoint=ckpt)
