"""Which precision the model runs in on this machine: measured, never assumed.

On CUDA ``auto`` means bf16 weights. On CPU bf16 autocast is only fast where the CPU has native
bf16 instructions (``avx512_bf16`` or ``amx_bf16``): on one such machine it encoded 1.6-2.0x
faster than fp32, on an AVX2-only CPU 6x *slower* (emulated). So ``auto`` on CPU reads the CPU
flags: without native bf16 it picks fp32 without timing anything; with it, it times one short
forward of the real model both ways, logs the figures, and picks bf16 unless the probe ran at
under half fp32's speed. The flags, not the load of the moment, decide, so scaled-out replicas
on one kind of CPU always agree. The choice and its figures are logged and kept on the reader
(``ActivationReader.precision_choice``).

Dynamic int8 quantization of the linear layers (``torch.ao.quantization.quantize_dynamic``) was
measured too and is not offered: 1.0-1.5x the speed of fp32 in two runs, but the codes keep only
Jaccard 0.72-0.74 of fp32's fired features, far below the 0.98 that would keep the diffs
comparable (docs/BENCHMARKS.md, "Precision on CPU").

>>> choose_cpu_precision(lambda p: None, flags=frozenset({"avx2", "fma"})).precision
'fp32'
>>> now = [0.0]
>>> def run(precision): now[0] += {"fp32": 0.30, "bf16": 0.15}[precision]
>>> choice = choose_cpu_precision(run, flags=frozenset({"amx_bf16"}), clock=lambda: now[0])
>>> choice.precision, round(choice.speedup or 0, 1)
('bf16', 2.0)
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]
ConcretePrecision = Literal["fp32", "bf16"]
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# With native bf16 the probe only vetoes bf16 when it runs at under half fp32's speed: an
# emulating CPU measures ~0.17x, a native one 1.3-2x even when loaded, so load noise can never
# flip the choice between two replicas of one CPU kind.
MIN_BF16_SPEEDUP = 0.5
# Timed forwards per precision after one warm-up each; alternated so a load change hits both.
PROBE_REPEATS = 2
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` chose, and why (the figures behind it when it measured)."""

    precision: ConcretePrecision
    reason: str
    flags: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        """fp32 time / bf16 time of the probe, when it ran."""
        if "fp32" in self.seconds and self.seconds.get("bf16"):
            return self.seconds["fp32"] / self.seconds["bf16"]
        return None


def _cpuinfo_field(names: tuple[str, ...], cpuinfo: Path) -> str | None:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where that file is absent."""
    return frozenset((_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())  # x86, arm


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name as the kernel reports it (for benchmark records)."""
    return _cpuinfo_field(("model name", "Model"), cpuinfo) or "unknown CPU"


def flag_precision(flags: frozenset[str] | None = None) -> ConcretePrecision:
    """What ``auto`` takes on a CPU with these flags (default: this CPU's), before its probe:
    bf16 with native bf16 instructions, fp32 without.

    >>> flag_precision(frozenset({"avx2"})), flag_precision(frozenset({"amx_bf16"}))
    ('fp32', 'bf16')
    """
    flags = cpu_flags() if flags is None else flags
    return "bf16" if flags & NATIVE_BF16_FLAGS else "fp32"


def choose_cpu_precision(
    run: Callable[[ConcretePrecision], None],
    flags: frozenset[str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PrecisionChoice:
    """Pick fp32 or bf16 autocast for CPU inference.

    Parameters
    ----------
    run
        Runs one short forward of the real model in the given precision.
    flags
        CPU flags (default: :func:`cpu_flags`).
    clock
        Seconds, for the timing (injectable for tests).
    """
    flags = cpu_flags() if flags is None else flags
    native = sorted(flags & NATIVE_BF16_FLAGS)
    if flag_precision(flags) == "fp32":
        return PrecisionChoice("fp32", "no native bf16 on this CPU (avx512_bf16/amx_bf16 absent)")
    samples: dict[ConcretePrecision, list[float]] = {"fp32": [], "bf16": []}
    for precision in samples:
        run(precision)  # warm-up: first calls pay for kernel selection and allocation
    for _ in range(PROBE_REPEATS):
        for precision, times in samples.items():
            start = clock()
            run(precision)
            times.append(clock() - start)
    seconds = {p: statistics.median(t) for p, t in samples.items()}
    speedup = seconds["fp32"] / seconds["bf16"] if seconds["bf16"] > 0 else 0.0
    # The flags decide, so every replica on this kind of CPU picks the same precision whatever
    # its load (codes of bf16 and fp32 differ slightly; replicas must not mix them). Only a
    # probe far slower than fp32 (a CPU whose flags promise more than it delivers) overrides.
    chosen: ConcretePrecision = "bf16" if speedup >= MIN_BF16_SPEEDUP else "fp32"
    reason = (f"native bf16 ({', '.join(native)}); probe forward fp32 {seconds['fp32']:.3f} s, "
              f"bf16 {seconds['bf16']:.3f} s: bf16 {speedup:.2f}x "
              f"(fp32 only below {MIN_BF16_SPEEDUP}x)")
    if chosen == "fp32":
        logger.warning("bf16 autocast measured %.2fx of fp32 despite %s: using fp32",
                       speedup, ", ".join(native))
    return PrecisionChoice(chosen, reason, tuple(native), {str(p): s for p, s in seconds.items()})


__all__ = [
    "ConcretePrecision",
    "Precision",
    "PrecisionChoice",
    "choose_cpu_precision",
    "cpu_flags",
    "cpu_name",
    "flag_precision",
]
