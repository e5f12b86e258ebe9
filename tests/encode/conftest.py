"""Fixtures of the encode tests: a tiny random Llama (no hub), the real default tokenizer.

The tiny model has the default tokenizer's vocabulary so real chat templates and special
tokens are exercised; its weights are random but seeded, which is all the mapping, masking
and pooling tests need.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from saewatch.config import EncodeSettings
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.model import load_default_tokenizer
from saewatch.encode.sae import LoadedSae, SaeExpectations
from tests.support.encode import TINY_HIDDEN, make_tiny_llama, make_topk_sae


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerBase:
    return load_default_tokenizer()


@pytest.fixture
def tiny_model(tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    return make_tiny_llama(len(tokenizer))


@pytest.fixture
def make_encoder(
    tokenizer: PreTrainedTokenizerBase,
) -> Callable[..., SAEEncoder]:
    """Build an encoder on a fresh tiny model with a random TopK SAE at ``hook_name``."""

    def build(
        hook_name: str = "blocks.1.hook_resid_post",
        d_sae: int = 256,
        k: int = 8,
        **settings: object,
    ) -> SAEEncoder:
        model = make_tiny_llama(len(tokenizer))
        sae = make_topk_sae(TINY_HIDDEN, d_sae, k, hook_name)
        loaded = LoadedSae(
            sae=sae,
            hook_name=hook_name,
            sae_id="random-topk",
            directory=None,
            expectations=SaeExpectations(0.0, None, "test"),
        )
        # fp32 unless a test asks otherwise: the batch-invariance and exact-code tests check
        # the fp32 guarantee (bf16's rounding may move a TopK edge: encode/base.py).
        settings = {"precision": "fp32"} | settings
        return SAEEncoder.from_parts(
            model, tokenizer, loaded, EncodeSettings(device="cpu", **settings), "tiny"
        )

    return build
