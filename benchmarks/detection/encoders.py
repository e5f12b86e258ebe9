"""The encoders the detection benchmark runs with: the shipped default, or a tiny one (``--quick``).

``default``: SmolLM2-135M-Instruct and the shipped default SAE (:meth:`SAEEncoder.from_settings`),
with the token budget of :data:`DEFAULT_TOKENS`. ``tiny``: a seeded random 4-layer Llama with the
default tokenizer and a random TopK SAE, the same kind of encoder the app tests run on; it makes
the whole harness (cache, simulation, App and Kafka replays) runnable in seconds, not the numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from sae_lens import TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformers import LlamaConfig, LlamaForCausalLM

from saewatch.config import EncodeSettings, SaeRef
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.model import load_default_tokenizer
from saewatch.encode.sae import LoadedSae, SaeExpectations

logger = logging.getLogger(__name__)

EncoderKind = Literal["default", "tiny"]
# Tokens per text: most AlpacaEval answers are longer, so they are cut here. Encoding cost grows
# linearly with it; 128 keeps the whole run under ~30 minutes on 2 CPU cores.
DEFAULT_TOKENS = 256  # the daemon's own budget (encode.max_tokens_per_text)
TINY_TOKENS = 48
TINY_HOOK = "blocks.1.hook_resid_post"
TINY_D_SAE, TINY_K = 256, 8


def encode_settings(kind: EncoderKind, max_tokens: int | None = None,
                    sae: Path | None = None) -> EncodeSettings:
    """The encode settings of ``kind`` (the App replays use the same ones); ``sae``: a sae-lens
    SAE folder instead of the shipped default."""
    tokens = max_tokens or (DEFAULT_TOKENS if kind == "default" else TINY_TOKENS)
    # precision "auto", the daemon's own choice: bf16 autocast only where this CPU runs it
    # faster (2x with native bf16, 6x slower without: saewatch.encode.precision).
    return EncodeSettings(device="cpu", max_tokens_per_text=tokens,
                          sae=None if sae is None else SaeRef(path=sae))


def build_encoder(kind: EncoderKind, settings: EncodeSettings) -> SAEEncoder:
    """Load the encoder of ``kind`` with ``settings``."""
    if kind == "default":
        return SAEEncoder.from_settings(settings)
    tokenizer = load_default_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True,
    )).eval()
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=64, d_sae=TINY_D_SAE, k=TINY_K,
                                metadata=SAEMetadata(hook_name=TINY_HOOK, model_name="tiny")))
    loaded = LoadedSae(sae=sae.eval(), hook_name=TINY_HOOK, sae_id="random-topk", directory=None,
                       expectations=SaeExpectations(0.0, None, "tiny benchmark encoder"))
    return SAEEncoder.from_parts(model, tokenizer, loaded, settings, "tiny")
