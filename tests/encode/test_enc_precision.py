"""``encode.precision``: auto picks by the CPU (flags, then a timed probe), never by habit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.precision import (
    MIN_BF16_SPEEDUP,
    NATIVE_BF16_FLAGS,
    choose_cpu_precision,
    cpu_flags,
    cpu_name,
)

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"})


class Clock:
    """A clock advanced only by the fake forwards, by a fixed time per precision."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self.now = 0.0
        self.calls: list[str] = []

    def run(self, precision: str) -> None:
        self.calls.append(precision)
        self.now += self.seconds[precision]


def test_without_native_bf16_fp32_is_chosen_without_timing_anything() -> None:
    clock = Clock({"fp32": 1.0, "bf16": 0.1})
    choice = choose_cpu_precision(clock.run, flags=AVX2_ONLY, clock=lambda: clock.now)
    assert choice.precision == "fp32" and clock.calls == []  # bf16 would be emulated: 6x slower
    assert "no native bf16" in choice.reason and choice.speedup is None


# bf16 at 2x, at 0.9x (a loaded probe: still bf16, the flags decide) and at 0.3x (vetoed).
@pytest.mark.parametrize(("bf16_s", "expected"), [(0.15, "bf16"), (0.33, "bf16"), (1.0, "fp32")])
def test_with_native_bf16_the_probe_decides(bf16_s: float, expected: str) -> None:
    clock = Clock({"fp32": 0.30, "bf16": bf16_s})
    choice = choose_cpu_precision(clock.run, flags=AVX2_ONLY | {"avx512_bf16"},
                                  clock=lambda: clock.now)
    assert choice.precision == expected
    assert choice.speedup == pytest.approx(0.30 / bf16_s)
    assert choice.seconds == pytest.approx({"fp32": 0.30, "bf16": bf16_s})
    # One warm-up each, then timed runs alternating, so a load change hits both sides.
    assert clock.calls[:2] == ["fp32", "bf16"] and clock.calls[2:6] == ["fp32", "bf16"] * 2
    assert f"fp32 only below {MIN_BF16_SPEEDUP}x" in choice.reason
    assert "avx512_bf16" in choice.reason


def test_cpu_flags_and_name_read_proc_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU @ 2GHz\nflags\t\t: fpu avx2 amx_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"} and cpu_name(info) == "Test CPU @ 2GHz"
    assert cpu_flags(tmp_path / "absent") == frozenset() and cpu_name(tmp_path / "x") == "unknown CPU"


def test_the_reader_resolves_auto_on_this_cpu(make_encoder: Callable[..., SAEEncoder]) -> None:
    reader = make_encoder(precision="auto").reader
    choice = reader.precision_choice
    assert reader.requested_precision == "auto"
    assert reader.precision == choice.precision in ("fp32", "bf16")
    if cpu_flags() & NATIVE_BF16_FLAGS:  # this machine measured: both sides timed
        assert set(choice.seconds) == {"fp32", "bf16"} and all(choice.seconds.values())
    else:
        assert choice.precision == "fp32" and not choice.seconds
    forced = make_encoder(precision="fp32").reader
    assert forced.precision == "fp32" and forced.precision_choice.reason == "encode.precision=fp32"
    assert make_encoder(precision="bf16").reader.precision == "bf16"
