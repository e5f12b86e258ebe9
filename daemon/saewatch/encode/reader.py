"""Hook activations of many texts: length-sorted buckets, dynamic padding, OOM back-off.

:class:`ActivationReader` owns a (truncated) base model and reads the residual stream at one
hook for the text tokens only. It is shared by the SAE encoder, SAE training and the dense
embedding baseline, so all three see exactly the same activations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from transformers import PreTrainedModel

from saewatch.encode.batching import pad_batch, to_device
from saewatch.encode.exceptions import EncodeError
from saewatch.encode.model import (
    HookPoint,
    base_model_of,
    decoder_layers,
    hook_module,
    run_to_hook,
    truncate_to_hook,
)
from saewatch.encode.precision import (
    ConcretePrecision,
    Precision,
    PrecisionChoice,
    choose_cpu_precision,
)
from saewatch.encode.stages import NULL_CLOCK, StageClock
from saewatch.encode.text import TextTokenizer, TokenizedText
from saewatch.models import TextField

logger = logging.getLogger(__name__)

T = TypeVar("T")
# (input_ids, attention_mask) -> hook activations [rows, width, d_model]
ForwardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# A batch never holds more documents than this, however short: bounds per-batch work and the
# rows one batch needs in the [documents, d_sae] pooling buffer (encode/pooling.py).
MAX_DOCS_PER_BATCH = 512
# The precision probe's forward: 256 tokens (~0.2 s in fp32 on 2 idle cores for the default
# model; six forwards add about a second to start-up). 512 tokens measured the same bf16/fp32
# ratio (1.27x vs 1.28x, both below the 1.6-2x of full batches) at twice the start-up cost.
PROBE_SHAPE = (2, 128)


@dataclass(frozen=True)
class TokenBatch:
    """Hook activations of the text tokens of some documents.

    ``acts[i]`` belongs to document ``docs[doc_index[i]]`` (an index into the caller's list)
    and is token ``token_ids[i]``.
    """

    docs: list[int]
    acts: torch.Tensor  # [n_tokens, d_model], float32
    doc_index: torch.Tensor  # [n_tokens], int64, position in ``docs``
    token_ids: torch.Tensor  # [n_tokens], int64


def resolve_device(device: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise EncodeError("encode.device=cuda but no CUDA device is available; use auto or cpu")
    return torch.device(device)


def plan_batches(lengths: Sequence[int], max_tokens_per_batch: int) -> list[list[int]]:
    """Group document indices into batches of similar length under a padded-token budget.

    >>> plan_batches([5, 1, 4, 2], max_tokens_per_batch=8)
    [[1, 3], [2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the newest document sets the padded length.
        fits = (len(current) + 1) * lengths[i] <= max_tokens_per_batch
        if current and (not fits or len(current) >= MAX_DOCS_PER_BATCH):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class ActivationReader:
    """Reads hook activations of texts' own tokens with an early-exit model.

    Parameters
    ----------
    model
        A transformers causal LM or base model; its layers after the hook are dropped in place.
    tokenizer
        Its tokenizer.
    hook
        Where to read the residual stream.
    device
        ``auto``, ``cpu`` or ``cuda``.
    precision
        ``auto``: bf16 weights on CUDA; on CPU bf16 autocast where it measured faster than fp32
        on this CPU, else fp32 (:mod:`saewatch.encode.precision`). ``bf16`` on CPU always
        uses bf16 autocast, ``fp32`` never. ``precision`` then holds the concrete choice and
        ``precision_choice`` the reason.
    max_tokens_per_text, max_tokens_per_batch, use_chat_template, tail_tokens_per_text
        As in :class:`saewatch.config.EncodeSettings`.
    early_exit
        Drop the layers after the hook (default); ``False`` only to measure what it saves.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: object,
        hook: HookPoint,
        device: str = "auto",
        precision: Precision = "auto",
        max_tokens_per_text: int = 256,
        max_tokens_per_batch: int = 8192,
        use_chat_template: bool = True,
        early_exit: bool = True,
        tail_tokens_per_text: int = 0,
    ) -> None:
        self.hook = hook
        self.device = resolve_device(device)
        self.requested_precision: Precision = precision
        self.max_tokens_per_batch = max_tokens_per_batch
        self.text = TextTokenizer(tokenizer, max_tokens_per_text, use_chat_template,
                                  tail_tokens_per_text)
        longest = max(len(self.text.prefix("prompt")), len(self.text.prefix("response")))
        limit = getattr(model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and longest + max_tokens_per_text > limit:
            raise EncodeError(
                f"encode.max_tokens_per_text={max_tokens_per_text} plus {longest} template "
                f"tokens exceeds the model's {limit} positions; lower max_tokens_per_text"
            )
        self._base = base_model_of(model)
        self.n_layers_total = len(decoder_layers(self._base))
        self.early_exit = early_exit
        # Without early exit (benchmarks only) the whole stack runs and the hook is still read.
        self.n_layers_kept = (
            truncate_to_hook(self._base, hook) if early_exit else self.n_layers_total
        )
        weights_bf16 = self.device.type == "cuda" and precision != "fp32"
        # nn.Module.to works in place; transformers' typed wrapper of it confuses mypy.
        self._base.to(device=self.device, dtype=torch.bfloat16 if weights_bf16 else torch.float32)  # type: ignore[call-arg]
        self._base.eval()
        self._module = hook_module(self._base, hook)
        pad = getattr(tokenizer, "pad_token_id", None)
        self._pad_id = int(pad) if pad is not None else 0
        self.precision_choice = self._choose_precision(precision, weights_bf16)
        self.precision: ConcretePrecision = self.precision_choice.precision
        self._autocast = self.device.type == "cpu" and self.precision == "bf16"
        logger.info("encoder precision %s on %s: %s", self.precision, self.device.type,
                    self.precision_choice.reason)
        self.d_model = int(self._base.config.hidden_size)
        # The budget shrinks after a CUDA out-of-memory error, so later batches fit at once.
        self._token_budget = max_tokens_per_batch
        # Benchmarks swap these: a replayed forward (benchmarks/perf/encoder_overhead.py) and a
        # clock that times the stages; the defaults run the model and time nothing.
        self.forward_fn: ForwardFn = self.run_model
        self.clock: StageClock = NULL_CLOCK

    def _choose_precision(self, requested: Precision, weights_bf16: bool) -> PrecisionChoice:
        if weights_bf16:
            return PrecisionChoice("bf16", f"bf16 weights on {self.device.type}")
        if requested != "auto":
            return PrecisionChoice(requested, f"encode.precision={requested}")
        if self.device.type != "cpu":
            return PrecisionChoice("fp32", f"fp32 on {self.device.type}")
        vocab = int(getattr(self._base.config, "vocab_size", 1000))
        ids = torch.arange(PROBE_SHAPE[0] * PROBE_SHAPE[1]).remainder(vocab).view(PROBE_SHAPE)
        mask = torch.ones_like(ids)

        def run(precision: ConcretePrecision) -> None:
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
            with torch.inference_mode(), autocast:
                run_to_hook(self._base, self._module, ids, mask)

        return choose_cpu_precision(run)

    def tokenize(self, texts: Sequence[str], field: TextField) -> list[TokenizedText]:
        with self.clock.stage("tokenize"):
            return self.text.tokenize(texts, field)

    def tokenize_fields(
        self, groups: Sequence[tuple[Sequence[str], TextField]]
    ) -> list[list[TokenizedText]]:
        """Several fields' texts in one tokenizer call (one per poll, not one per field)."""
        with self.clock.stage("tokenize"):
            return self.text.tokenize_fields(groups)

    def iter_batches(self, docs: Sequence[TokenizedText]) -> Iterator[TokenBatch]:
        """Yield activations batch by batch; every document with tokens appears exactly once."""
        yield from self.map_batches(docs, lambda batch: batch)

    def map_batches(
        self, docs: Sequence[TokenizedText], fn: Callable[[TokenBatch], T]
    ) -> Iterator[T]:
        """Yield ``fn(activations)`` per batch; forward and ``fn`` are retried together on OOM.

        On CUDA out-of-memory the batch is halved and both halves are retried, down to one
        text: no document is ever dropped. Documents without tokens are skipped.
        """
        lengths = [len(d.ids) for d in docs]
        wanted = [i for i in range(len(docs)) if docs[i].n_tokens > 0]
        for plan in plan_batches([lengths[i] for i in wanted], self._token_budget):
            group = [wanted[j] for j in plan]
            yield from self._with_oom_retry(group, lambda g: fn(self._forward(docs, g)))

    def _with_oom_retry(self, group: list[int], fn: Callable[[list[int]], T]) -> list[T]:
        try:
            return [fn(group)]
        except torch.cuda.OutOfMemoryError as exc:
            if len(group) == 1:
                raise EncodeError(
                    "CUDA out of memory on a single text: lower encode.max_tokens_per_text"
                ) from exc
            torch.cuda.empty_cache()
            self._token_budget = max(64, self._token_budget // 2)
            logger.warning(
                "CUDA out of memory on %d texts; halving (token budget now %d)",
                len(group),
                self._token_budget,
            )
            mid = len(group) // 2
            return self._with_oom_retry(group[:mid], fn) + self._with_oom_retry(group[mid:], fn)

    def run_model(self, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """The model forward to the hook, ``[rows, width, d_model]``: the default ``forward_fn``."""
        return run_to_hook(self._base, self._module, input_ids, attention)

    def _forward(self, docs: Sequence[TokenizedText], group: list[int]) -> TokenBatch:
        with self.clock.stage("pad"):
            host = pad_batch(docs, group, self._pad_id, pin=self.device.type == "cuda")
            ids, attention, select, doc_index = (
                to_device(t, self.device)
                for t in (host.input_ids, host.attention, host.select, host.doc_index)
            )
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._autocast)
        with torch.inference_mode(), autocast:
            with self.clock.stage("forward"):
                acts = self.forward_fn(ids, attention)
            with self.clock.stage("mask"):
                # A gather of the text tokens' rows: the values of acts[mask], without the
                # device sync a boolean mask costs on CUDA.
                selected = acts.reshape(-1, acts.shape[-1]).index_select(0, select).float()
        return TokenBatch(docs=group, acts=selected, doc_index=doc_index, token_ids=host.token_ids)

    def dense_embed(self, texts: Sequence[str], field: TextField = "response") -> np.ndarray:
        """Mean-pooled hook activations per text, ``[len(texts), d_model]`` float32.

        The dense-embedding baseline for drift detection; empty texts give zero rows.
        """
        docs = self.tokenize(texts, field)
        out = np.zeros((len(docs), self.d_model), dtype=np.float32)
        for batch in self.iter_batches(docs):
            with torch.inference_mode():
                sums = torch.zeros(len(batch.docs), self.d_model, device=batch.acts.device)
                sums.index_add_(0, batch.doc_index, batch.acts)
                counts = torch.bincount(batch.doc_index, minlength=len(batch.docs))
                means = sums / counts.clamp(min=1).unsqueeze(1).float()
            out[batch.docs] = means.cpu().numpy()
        return out
