"""Where the encoder's time goes: wall time per stage (tokenize, pad, forward, mask, sae, pool, ...).

The encoder and its reader enter a stage around each step of the hot path. The default clock
(:data:`NULL_CLOCK`) times nothing and costs a method call per stage; benchmarks install a
:class:`StageTimes` to break an encode down by stage (``benchmarks/perf/encoder_overhead.py``).
On CUDA a timing clock synchronizes the device at each stage boundary, so its per-stage figures
are true but its total is slower than an unobserved run, whose stages overlap.

>>> ticks = iter([0.0, 0.5, 1.0, 1.25])
>>> times = StageTimes(clock=lambda: next(ticks))
>>> with times.stage("tokenize"):
...     pass
>>> with times.stage("sae"):
...     pass
>>> times.seconds
{'tokenize': 0.5, 'sae': 0.25}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch


class StageClock:
    """Times nothing: the clock the hot path runs with unless a benchmark installs another.

    >>> with NULL_CLOCK.stage("forward"):
    ...     pass
    """

    def stage(self, name: str) -> AbstractContextManager[None]:
        """A context around one step of stage ``name``."""
        return nullcontext()


NULL_CLOCK = StageClock()


class StageTimes(StageClock):
    """Adds up wall seconds per stage name over any number of encodes.

    Parameters
    ----------
    sync_device
        A CUDA device to synchronize at each stage boundary (``None``: do not).
    clock
        Seconds (injectable for tests).
    """

    def __init__(
        self,
        sync_device: torch.device | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.sync_device = sync_device
        self.seconds: dict[str, float] = {}
        self._clock = clock

    def stage(self, name: str) -> AbstractContextManager[None]:
        return self._timed(name)

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        self._sync()
        start = self._clock()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + self._clock() - start

    def _sync(self) -> None:
        if self.sync_device is not None and self.sync_device.type == "cuda":
            torch.cuda.synchronize(self.sync_device)

    def reset(self) -> None:
        """Forget the times added so far."""
        self.seconds = {}


__all__ = ["NULL_CLOCK", "StageClock", "StageTimes"]
