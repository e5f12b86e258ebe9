"""Hook-to-layer mapping and early exit on a tiny random Llama."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaForCausalLM

from saewatch.encode.exceptions import HookMappingError
from saewatch.encode.model import (
    HookPoint,
    base_model_of,
    decoder_layers,
    hook_module,
    parse_hook_name,
    run_to_hook,
    truncate_to_hook,
)
from tests.support.encode import TINY_LAYERS


def _inputs(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding on one row
    return ids, mask


@pytest.mark.parametrize("layer", range(TINY_LAYERS))
@pytest.mark.parametrize("kind", ["resid_post", "resid_pre"])
def test_hook_equals_hidden_states_of_full_forward(
    tiny_model: LlamaForCausalLM, layer: int, kind: str
) -> None:
    hook = parse_hook_name(f"blocks.{layer}.hook_{kind}")
    base = base_model_of(tiny_model)
    ids, mask = _inputs(tiny_model.config.vocab_size)
    with torch.inference_mode():
        full = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = run_to_hook(base, hook_module(base, hook), ids, mask)
    expected = full[hook.hidden_states_index]
    if hook.hidden_states_index == TINY_LAYERS:
        # transformers applies the final norm to the last entry of hidden_states.
        got = base.norm(got)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "hook_name",
    [
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_post",
        "blocks.2.hook_resid_pre",
        "blocks.3.hook_resid_post",
    ],
)
def test_early_exit_gives_identical_activations(
    tiny_model: LlamaForCausalLM, hook_name: str
) -> None:
    hook = parse_hook_name(hook_name)
    full = base_model_of(tiny_model)
    short = copy.deepcopy(full)
    kept = truncate_to_hook(short, hook)
    assert kept == max(hook.layers_needed, 1)
    assert len(decoder_layers(short)) == kept < TINY_LAYERS or hook.layers_needed == TINY_LAYERS
    ids, mask = _inputs(tiny_model.config.vocab_size)
    with torch.inference_mode():
        want = run_to_hook(full, hook_module(full, hook), ids, mask)
        got = run_to_hook(short, hook_module(short, hook), ids, mask)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_truncated_models_last_hidden_state_is_normed_not_the_hook(
    tiny_model: LlamaForCausalLM,
) -> None:
    # Why the hook is read with a forward hook: hidden_states[-1] has the final norm applied.
    base = base_model_of(tiny_model)
    hook = HookPoint(layer=1, kind="resid_post")
    truncate_to_hook(base, hook)
    ids, mask = _inputs(tiny_model.config.vocab_size)
    with torch.inference_mode():
        last = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).last_hidden_state
        got = run_to_hook(base, hook_module(base, hook), ids, mask)
    assert not torch.allclose(last, got, atol=1e-3)


@pytest.mark.parametrize(
    "name", [None, "", "blocks.3.hook_mlp_out", "blocks.x.hook_resid_post", "model.layers.3"]
)
def test_unknown_hooks_fail_clearly(name: str | None) -> None:
    with pytest.raises(HookMappingError, match="residual stream"):
        parse_hook_name(name)


def test_hook_beyond_the_model_fails_clearly(tiny_model: LlamaForCausalLM) -> None:
    with pytest.raises(HookMappingError, match="trained on another model"):
        truncate_to_hook(base_model_of(tiny_model), HookPoint(layer=TINY_LAYERS, kind="resid_post"))
