"""Tiny random models: a random Llama and a random TopK SAE, for the encode, app and
secured-broker tests (small enough to load in milliseconds; build them seeded where a test compares
codes across processes)."""

from __future__ import annotations

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
