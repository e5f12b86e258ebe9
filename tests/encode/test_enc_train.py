"""Train a tiny SAE for a few steps, save, load, encode: same codes; labels from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerBase

from saewatch.config import EncodeSettings, SaeRef
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.labels import MARK_OPEN, load_labels
from saewatch.encode.model import parse_hook_name
from saewatch.encode.reader import ActivationReader
from saewatch.encode.sae import LoadedSae, SaeExpectations, load_sae
from saewatch.training.labelling import build_labels
from saewatch.training.train import (
    ActivationSet,
    TrainConfig,
    evaluate_sae,
    extract_activations,
    save_sae_fp16,
    train_topk_sae,
)
from tests.support.encode import TINY_HIDDEN, make_tiny_llama

HOOK = "blocks.2.hook_resid_post"
CORPUS = [
    "Sure! Here is a short poem about the sea and the sky.",
    "To install the package, run pip install and then import it.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "The capital of France is Paris. It is known for the Eiffel Tower.",
    "I'm sorry, but I can't help with that request.",
    "1. Preheat the oven.\n2. Mix flour and sugar.\n3. Bake for 20 minutes.",
] * 4


@pytest.fixture(scope="module")
def trained(tokenizer: PreTrainedTokenizerBase, tmp_path_factory: pytest.TempPathFactory):
    reader = ActivationReader(
        make_tiny_llama(len(tokenizer)), tokenizer, parse_hook_name(HOOK), device="cpu"
    )
    data = extract_activations(reader, [(t, "response") for t in CORPUS], max_tokens=10_000)
    config = TrainConfig(d_sae=64, k=4, batch_size=64, epochs=30, lr=3e-3, warmup_steps=5)
    sae = train_topk_sae(data.acts, config, metadata={"hook_name": HOOK, "model_name": "tiny"})
    out = tmp_path_factory.mktemp("sae")
    save_sae_fp16(sae, out)
    return data, sae, out


def _encoder(tokenizer: PreTrainedTokenizerBase, loaded: LoadedSae) -> SAEEncoder:
    settings = EncodeSettings(device="cpu", precision="fp32")  # exact comparisons: fp32
    return SAEEncoder.from_parts(make_tiny_llama(len(tokenizer)), tokenizer, loaded, settings)


def test_extraction_keeps_text_tokens_with_their_documents(trained) -> None:
    data, _, _ = trained
    assert data.acts.shape[1] == TINY_HIDDEN and data.acts.dtype == np.float16
    assert len(data.acts) == len(data.token_ids) == len(data.doc_ids)
    assert sorted(set(data.doc_ids.tolist())) == list(range(len(CORPUS)))


def test_training_learns_a_sparse_reconstruction(trained) -> None:
    data, sae, _ = trained
    result = evaluate_sae(sae, data.acts)
    assert result.mean_l0 == pytest.approx(4.0)
    assert result.fve > 0.5  # far better than the mean (0) after a few hundred steps


def test_saved_sae_loads_with_sae_lens_and_encodes_identically(
    trained, tokenizer: PreTrainedTokenizerBase
) -> None:
    _, sae, out = trained
    assert json.loads((out / "cfg.json").read_text())["metadata"]["hook_name"] == HOOK
    loaded = load_sae(SaeRef(path=out), torch.device("cpu"))
    assert loaded.hook_name == HOOK and loaded.sae.cfg.d_sae == 64
    # The weights were stored in float16: compare against the same rounding in memory.
    in_memory = sae.to(dtype=torch.float16).to(dtype=torch.float32)
    reference = LoadedSae(in_memory, HOOK, "mem", None, SaeExpectations(0.0, None, "test"))
    a = _encoder(tokenizer, loaded).encode_texts(CORPUS[:6], "response")
    b = _encoder(tokenizer, reference).encode_texts(CORPUS[:6], "response")
    assert a.indices.tolist() == b.indices.tolist()
    np.testing.assert_array_equal(a.values, b.values)
    assert a.indptr.tolist() == b.indptr.tolist()


def test_activation_cache_round_trips(trained, tmp_path: Path) -> None:
    data, _, _ = trained
    data.save(tmp_path / "acts.npz")
    back = ActivationSet.load(tmp_path / "acts.npz")
    np.testing.assert_array_equal(back.acts, data.acts)
    assert back.texts == data.texts


def test_labels_name_top_tokens_and_mark_snippets(
    trained, tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    data, sae, _ = trained
    labels = build_labels(sae, data, tokenizer, sae_id="tiny")
    assert labels.d_sae == 64 and len(labels.features) == 64
    live = [f for f in labels.features if f.top_tokens]
    assert live, "some features must fire on the corpus"
    for f in live:
        assert f.label and f.examples and MARK_OPEN in f.examples[0]
        assert 0 < (f.token_frequency or 0) <= 1
    path = tmp_path / "labels.json"
    path.write_text(labels.model_dump_json())
    assert load_labels(path, d_sae=64).label(live[0].feature) == live[0].label


@pytest.mark.parametrize("n_dead", [0, 5, 40])
def test_sparse_training_loss_equals_sae_lens_forward_pass(n_dead: int) -> None:
    from sae_lens.saes.sae import TrainStepInput

    from saewatch.training.train import _new_training_sae, topk_step_loss

    config = TrainConfig(d_sae=48, k=6, aux_loss_coefficient=0.5)
    sae = _new_training_sae(16, config, {"hook_name": HOOK})
    torch.manual_seed(3)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(48, 1) + 0.5)  # rows of unequal norm
        sae.b_enc.normal_()
    x = torch.randn(32, 16)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[:n_dead] = True
    ours, mse, fired = topk_step_loss(sae, x, dead)
    ref = sae.training_forward_pass(
        TrainStepInput(
            sae_in=x,
            coefficients={},
            dead_neuron_mask=dead,
            n_training_steps=0,
            is_logging_step=False,
        )
    )
    torch.testing.assert_close(ours, ref.loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mse, ref.losses["mse_loss"].detach(), rtol=1e-4, atol=1e-5)
    assert fired.tolist() == (ref.feature_acts > 0).any(0).tolist()
    grads = torch.autograd.grad(ours, [sae.W_enc, sae.W_dec, sae.b_dec])
    ref_grads = torch.autograd.grad(ref.loss, [sae.W_enc, sae.W_dec, sae.b_dec])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
