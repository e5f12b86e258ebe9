"""Tiny random models: a random Llama and a random TopK SAE, for the encode, app and
secured-broker tests (small enough to load in milliseconds; build them seeded where a test compares
codes across processes)."""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens import TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformers import LlamaConfig, LlamaForCausalLM

from saewatch.config import EncodeSettings
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.sae import LoadedSae, SaeExpectations

TINY_LAYERS = 4
TINY_HIDDEN = 64


def make_tiny_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=TINY_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def make_topk_sae(d_in: int, d_sae: int, k: int, hook_name: str, seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    cfg = TopKSAEConfig(
        d_in=d_in, d_sae=d_sae, k=k, metadata=SAEMetadata(hook_name=hook_name, model_name="tiny")
    )
    return TopKSAE(cfg).eval()


def save_tiny_model(root: Path, hook_name: str) -> tuple[Path, Path]:
    """A tiny Llama (with the default tokenizer) and a TopK SAE on ``hook_name`` saved under
    ``root`` as a user would bring them: ``(model dir, SAE dir)`` for ``encode.model`` and
    ``encode.sae.path``."""
    from saewatch.encode.model import load_default_tokenizer

    tokenizer = load_default_tokenizer()
    make_tiny_llama(len(tokenizer)).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    make_topk_sae(TINY_HIDDEN, 256, 8, hook_name).save_model(str(root / "sae"))
    return root / "model", root / "sae"


def tiny_encoder(hook_name: str, settings: EncodeSettings, d_sae: int = 256,
                 k: int = 8) -> SAEEncoder:
    """A real :class:`SAEEncoder` over a tiny random Llama (the default tokenizer) and a random
    TopK SAE on ``hook_name``: the full encode path in milliseconds, codes meaningless."""
    from saewatch.encode.model import load_default_tokenizer

    tokenizer = load_default_tokenizer()
    loaded = LoadedSae(sae=make_topk_sae(TINY_HIDDEN, d_sae, k, hook_name), hook_name=hook_name,
                       sae_id="random-topk", directory=None,
                       expectations=SaeExpectations(0.0, None, "test"))
    return SAEEncoder.from_parts(make_tiny_llama(len(tokenizer)), tokenizer, loaded, settings,
                                 "tiny")
