"""Tiny random models: a random Llama and a random TopK SAE, for the encode, app and
secured-broker tests (small enough to load in milliseconds; build them seeded where a test compares
codes across processes)."""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens import TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformers import LlamaConfig, LlamaForCausalLM

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
