"""The few figures of each benchmark's JSON that ``benchmarks.run`` prints in its summary.

Each benchmark owns its JSON layout; a key missing here (a layout that moved on) is left out of
the headline rather than guessed, and the full JSON is always kept beside the summary.

>>> headline("e2e", {"e2e_events_per_s": 3.2, "e2e_vs_encoder": 0.97, "events": 96})
{'e2e_events_per_s': 3.2, 'e2e_vs_encoder': 0.97, 'events': 96}
>>> headline("unknown", {"x": 1})
{}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Paths into each benchmark's JSON, as tuples of keys.
HEADLINES: dict[str, tuple[tuple[str, ...], ...]] = {
    "encoder": (("encoder", "events_per_s"), ("encoder", "tokens_per_s"),
                ("encoder_vs_bare_ratio",), ("early_exit_speedup",)),
    "aggregate": (("throughput", "events_per_s"), ("throughput_by_batch", "64"),
                  ("real", "thresholded", "events_per_s"), ("real", "raw", "events_per_s"),
                  ("features", "events_per_s")),
    "clusters": (("options", "ours-pca-48", "learn_per_s"),
                 ("options", "ours-pca-48", "ari_vs_offline")),
    "e2e": (("e2e_events_per_s",), ("encoder_events_per_s",), ("e2e_vs_encoder",),
            ("events",)),
    "scaleout": (("aggregator", "events_per_s"),),
    "crash_trials": (("kills_total",), ("kills_mid_stream",), ("all_exact",)),
}


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def headline(name: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": value}`` for each of the benchmark's headline paths present in ``result``."""
    out = {".".join(path): _get(result, path) for path in HEADLINES.get(name, ())}
    if name == "scaleout":
        for config in result.get("configurations", []):
            out[f"encoders={config.get('encoders')}.events_per_s"] = config.get("events_per_s")
    return {k: round(v, 3) if isinstance(v, float) else v
            for k, v in out.items() if v is not None}
