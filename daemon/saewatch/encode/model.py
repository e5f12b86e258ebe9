"""The language model side: loading, hook-to-layer mapping, early exit, reading the hook.

An SAE names where it reads the residual stream with a TransformerLens hook name. For a
transformers decoder stack ``layers``::

    blocks.L.hook_resid_post  = output of layers[L]      = hidden_states[L + 1]
    blocks.L.hook_resid_pre   = input of layers[L]       = hidden_states[L]

Only the layers up to the hook are kept (early exit, the largest speed lever), and the hook is
read with a forward hook on the layer module: with later layers removed, ``hidden_states[-1]``
would have the final norm applied. The LM head is never computed (only the base model runs).

>>> parse_hook_name("blocks.15.hook_resid_post")
HookPoint(layer=15, kind='resid_post')
>>> parse_hook_name("blocks.3.hook_resid_pre").layers_needed
3
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from saewatch.encode.default import (
    DEFAULT_GGUF_FILE,
    DEFAULT_MODEL_NAME,
    cache_dir,
    default_model_dir,
)
from saewatch.encode.exceptions import HookMappingError, ModelLoadError

logger = logging.getLogger(__name__)

HookKind = Literal["resid_post", "resid_pre"]
_HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_post|resid_pre)$")
# Attribute paths of the decoder stack in common architectures (Llama/Qwen/Mistral/Gemma,
# GPT-2/GPT-J, GPT-NeoX/Pythia), relative to the base model.
_LAYER_PATHS = ("layers", "h", "decoder.layers", "blocks")


@dataclass(frozen=True)
class HookPoint:
    """Where an SAE reads the residual stream: after (``resid_post``) or before layer ``layer``."""

    layer: int
    kind: HookKind

    @property
    def layers_needed(self) -> int:
        """How many decoder layers must run to produce this hook's activations."""
        return self.layer + 1 if self.kind == "resid_post" else self.layer

    @property
    def hidden_states_index(self) -> int:
        """Index of the same activations in ``output_hidden_states`` of a full forward."""
        return self.layers_needed

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.kind}"


def parse_hook_name(hook_name: str | None) -> HookPoint:
    """Map a TransformerLens residual-stream hook name to a :class:`HookPoint`.

    Raises
    ------
    HookMappingError
        For hooks saewatch cannot map (attention/MLP outputs, missing names).
    """
    match = _HOOK_RE.match(hook_name or "")
    if match is None:
        raise HookMappingError(
            f"SAE hook_name {hook_name!r} is not supported: saewatch reads the residual stream "
            "(blocks.L.hook_resid_post or blocks.L.hook_resid_pre); use an SAE trained there"
        )
    return HookPoint(layer=int(match.group(1)), kind=match.group(2))  # type: ignore[arg-type]


def decoder_layers(base: nn.Module) -> nn.ModuleList:
    """The decoder block list of a base (headless) transformers model."""
    for path in _LAYER_PATHS:
        obj: Any = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    raise HookMappingError(
        f"cannot find the decoder layers of {type(base).__name__} (looked for "
        f"{', '.join(_LAYER_PATHS)}); saewatch supports Llama/Qwen/Mistral/Gemma/GPT-2/NeoX-style models"
    )


def base_model_of(model: PreTrainedModel) -> PreTrainedModel:
    """The model without its LM head (``model.model`` for Llama), which is never computed."""
    base = model.base_model
    return base if isinstance(base, PreTrainedModel) else model


def truncate_to_hook(base: PreTrainedModel, hook: HookPoint) -> int:
    """Drop the decoder layers after ``hook`` in place (early exit); return layers kept.

    Raises
    ------
    HookMappingError
        When the model has fewer layers than the hook needs.
    """
    layers = decoder_layers(base)
    total = len(layers)
    if hook.layer >= total:
        raise HookMappingError(
            f"SAE hook {hook.hook_name} needs layer {hook.layer} but the model has {total} "
            "layers: the SAE was trained on another model"
        )
    keep = max(hook.layers_needed, 1)  # resid_pre of layer 0 still needs a forward to run
    del layers[keep:]
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(base.config, attr):
            setattr(base.config, attr, keep)
    if isinstance(getattr(base.config, "layer_types", None), list):
        base.config.layer_types = base.config.layer_types[:keep]
    logger.info("early exit: kept %d of %d layers for %s", keep, total, hook.hook_name)
    return keep


def hook_module(base: PreTrainedModel, hook: HookPoint) -> nn.Module:
    """The module whose output is the hook's activations (a layer, or the embedding)."""
    if hook.kind == "resid_pre" and hook.layer == 0:
        return base.get_input_embeddings()
    return decoder_layers(base)[hook.layers_needed - 1]


@contextmanager
def capture(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect ``module``'s output tensor on each forward while the context is open."""
    captured: list[torch.Tensor] = []

    def _hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
        captured.append(out[0] if isinstance(out, tuple) else out)

    handle = module.register_forward_hook(_hook)
    try:
        yield captured
    finally:
        handle.remove()


def run_to_hook(
    base: PreTrainedModel,
    module: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Forward ``input_ids`` and return the hook activations ``[batch, seq, d_model]``."""
    with capture(module) as out:
        base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out[-1]


def load_language_model(
    name: str | None,
    gguf_file: str | None = None,
    dtype: torch.dtype = torch.float32,
    cache: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer; ``name=None`` loads the offline default.

    The default ships as GGUF (dequantized on load, ~16 s); a plain copy is saved once under
    the user cache (:func:`saewatch.encode.default.cache_dir`) and reloads in well under a second.
    Other models are a local directory or a hub name (the hub needs network access).
    """
    if name is None:
        return _load_default(dtype, cache if cache is not None else cache_dir())
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(name, gguf_file=gguf_file, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load model {name!r}: {exc}. Give a local directory or a reachable hub name"
        ) from exc
    return model.eval(), tokenizer


def load_default_tokenizer(cache: Path | None = None) -> PreTrainedTokenizerBase:
    """The default model's tokenizer alone (from the cached copy, else from the GGUF file)."""
    plain = (cache if cache is not None else cache_dir()) / "models" / DEFAULT_MODEL_NAME
    if (plain / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(plain)
    return AutoTokenizer.from_pretrained(default_model_dir(), gguf_file=DEFAULT_GGUF_FILE)


def _load_default(
    dtype: torch.dtype, cache: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    plain = cache / "models" / DEFAULT_MODEL_NAME
    if (plain / "config.json").is_file():
        start = time.monotonic()
        model = AutoModelForCausalLM.from_pretrained(plain, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(plain)
        logger.info("default model from cache %s in %.1f s", plain, time.monotonic() - start)
        return model.eval(), tokenizer
    folder = default_model_dir()
    start = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=DEFAULT_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=DEFAULT_GGUF_FILE, dtype=torch.float32
    )
    logger.info("default model dequantized from GGUF in %.1f s", time.monotonic() - start)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one with the same weights.
    model = type(gguf_model)(gguf_model.config)
    model.load_state_dict(gguf_model.state_dict())
    _save_atomically(model, tokenizer, plain)
    # nn.Module.to works in place; transformers' typed wrapper of it confuses mypy.
    model.to(dtype=dtype)  # type: ignore[call-arg]
    return model.eval(), tokenizer


def _save_atomically(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path
) -> None:
    tmp = target.with_name(f"{target.name}.tmp-{time.monotonic_ns()}")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
        logger.info("saved a plain copy of the default model to %s", target)
    except OSError as exc:  # a read-only or full cache only costs load time later
        logger.warning("could not cache the default model at %s: %s", target, exc)
        shutil.rmtree(tmp, ignore_errors=True)
