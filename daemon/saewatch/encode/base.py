"""The encoder contract: ``encode(events) -> FeatureBatch``, pure (same texts, same codes).

Same codes up to the precision's rounding: in fp32 a text's codes do not depend on the batch it
is encoded in; in bf16 (CUDA weights, or CPU autocast) the rounding of a batch's matmuls can move
a feature across the TopK or threshold edge, so ~1 % of fired features may differ between two
batchings of the same texts. Exact cross-process comparisons (the scale-out tests) run in fp32.

An encoder may start a batch before the caller needs its codes: :meth:`Encoder.begin` returns a
:class:`PendingCodes` whose :meth:`~PendingCodes.result` finishes it. Where
:attr:`Encoder.looks_ahead` is true, ``begin`` already works in the background (the SAE encoder
tokenizes in a thread), so the daemon begins the next poll before it finishes the current one;
otherwise ``begin`` does nothing until ``result`` and the daemon does not poll ahead.

>>> from saewatch.models import SparseCodes
>>> class Empty(Encoder):
...     encoder_id, d_sae = "empty", 1
...     def encode(self, events):
...         none = SparseCodes.from_rows([], [])
...         return FeatureBatch(encoder_id=self.encoder_id, d_sae=1, events=(),
...                             prompt=none, response=none)
>>> pending = Empty().begin([])
>>> len(pending.result()), Empty().looks_ahead
(0, False)

Besides encoding, an encoder answers what the runtime exports about it: :meth:`Encoder.describe`
(``saewatch_model_info``), :attr:`Encoder.health` (the SAE sanity gauges) and
:meth:`Encoder.device_memory` (GPU memory gauges). The defaults suit an encoder without a model
behind it (tests, replays of stored codes).

>>> EncoderInfo(model="m", hook="blocks.3.hook_resid_post", sae="s").device
'cpu'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from saewatch.models import FeatureBatch, LLMEvent


@dataclass(frozen=True)
class EncoderHealth:
    """Sanity numbers measured on the first tokens the encoder saw (by
    :class:`saewatch.encode.health.SanityCheck`; kept here, free of torch, because every role
    imports this contract and the aggregator never loads a model).

    ``fve`` and ``mean_l0`` are ``None`` until a first batch was encoded; ``warnings`` is empty
    when they fall in the expected ranges.
    """

    tokens_checked: int
    done: bool
    fve: float | None
    mean_l0: float | None
    expected_min_fve: float
    expected_l0_range: tuple[float, float] | None
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.warnings


@dataclass(frozen=True)
class EncoderInfo:
    """The model, hook and SAE an encoder runs, on which device and in which precision."""

    model: str
    hook: str
    sae: str
    device: str = "cpu"
    precision: str = "fp32"


@dataclass(frozen=True)
class DeviceMemory:
    """Accelerator memory in bytes (``torch.cuda.memory_allocated`` / ``memory_reserved``)."""

    device: str
    allocated: int
    reserved: int


@dataclass(frozen=True)
class PendingCodes:
    """A batch of events begun by :meth:`Encoder.begin`; :meth:`result` finishes it (once)."""

    events: Sequence[LLMEvent]
    finish: Callable[[], FeatureBatch]

    def result(self) -> FeatureBatch:
        """The batch's codes, computed in the calling thread (after any work begun ahead)."""
        return self.finish()


class Encoder(ABC):
    """Turns events' prompt and response texts into sparse SAE document codes."""

    encoder_id: str  # names model, layer and SAE; state refuses to mix codes of two encoders
    d_sae: int

    @abstractmethod
    def encode(self, events: Sequence[LLMEvent]) -> FeatureBatch:
        """Encode both text fields of every event; never drops an event."""

    @property
    def looks_ahead(self) -> bool:
        """Whether :meth:`begin` starts work in the background (then the caller begins the
        next batch before finishing this one); by default it does not."""
        return False

    def begin(self, events: Sequence[LLMEvent]) -> PendingCodes:
        """Start encoding ``events``; the codes are those of :meth:`encode`. By default
        nothing starts before :meth:`PendingCodes.result`."""
        return PendingCodes(events, lambda: self.encode(events))

    def close(self) -> None:
        """Release what the encoder holds besides memory (worker threads); idempotent."""
        return None  # nothing held by default

    def describe(self) -> EncoderInfo:
        """What runs (for ``saewatch_model_info``); by default the encoder id alone."""
        return EncoderInfo(model=self.encoder_id, hook="", sae="")

    @property
    def health(self) -> EncoderHealth | None:
        """FVE and L0 of the SAE on the first tokens, where the encoder measures them."""
        return None

    def device_memory(self) -> DeviceMemory | None:
        """Memory of the accelerator the model runs on; ``None`` on CPU."""
        return None
