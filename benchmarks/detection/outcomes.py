"""Per-stream outcomes: what the SAE verdict and the dense baseline did on one stream."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.detection import dense_baseline
from benchmarks.detection.cache import CodeStore
from benchmarks.detection.properties import PlantedProperty
from benchmarks.detection.scenarios import Stream
from benchmarks.detection.simulate import Replay, looks, replay
from saewatch.models import ComparisonResult, FeatureDelta

logger = logging.getLogger(__name__)

TOP_SHOWN = 5  # features per direction written to the results


@dataclass
class Outcome:
    """One stream's results (JSON-ready through :meth:`as_dict`)."""

    stream: Stream
    sae: Replay
    points: list[int]
    dense_z: list[float]
    planted: dict[str, Any] = field(default_factory=dict)

    @property
    def dense_max_z(self) -> float:
        return max(self.dense_z)

    def as_dict(self) -> dict[str, Any]:
        final = self.sae.final
        if final is None:
            raise ValueError(f"stream {self.stream.name!r} had no look (fewer than 10 events?)")
        return {
            "scenario": self.stream.scenario, "name": self.stream.name,
            "params": self.stream.params, "events_per_side": self.stream.length,
            "sae": {
                "first_drift": self.sae.first_drift, "any_alarm": self.sae.any_alarm,
                "final_verdict": final.verdict, "final_n_significant": final.n_significant,
                "max_n_significant": max(k.n_significant for k in self.sae.looks),
                "drift_score": final.drift_score,
                "top_up": [_feature(d) for d in final.top_up[:TOP_SHOWN]],
                "top_down": [_feature(d) for d in final.top_down[:TOP_SHOWN]],
            },
            "dense": {"max_z": self.dense_max_z,
                      "z": [round(z, 3) for z in self.dense_z]},
            "looks": self.points,
            **({"planted": self.planted} if self.planted else {}),
        }


def _feature(d: FeatureDelta) -> dict[str, Any]:
    example = (d.examples_candidate if d.direction == "up" else d.examples_baseline)
    return {"feature": d.feature, "label": d.label, "freq_baseline": round(d.freq_baseline, 3),
            "freq_candidate": round(d.freq_candidate, 3), "q": d.q_value,
            "example": example[0].text[:120] if example else None}


def planted_shown(result: ComparisonResult, prop: PlantedProperty) -> dict[str, Any]:
    """Whether a top-10 ``up`` feature's candidate examples show the planted property.

    An example shows it when it is a planted event *and* the marker is in its snippet (what an
    operator reads). Features whose examples are planted events at all are counted too.
    """
    tag = f"+{prop.name}"
    with_planted, shown = [], []
    for d in result.top_up[:10]:
        planted = [s for s in d.examples_candidate if s.event_id.endswith(tag)]
        if planted:
            with_planted.append(d.feature)
        if any(prop.marker in s.text for s in planted):
            shown.append({"feature": d.feature, "label": d.label,
                          "snippet": next(s.text for s in planted if prop.marker in s.text)[:160]})
    return {"top_up": len(result.top_up[:10]), "features_with_planted_examples": with_planted,
            "shown": bool(shown), "shown_by": shown[:3]}


def evaluate(stream: Stream, store: CodeStore, labels: Mapping[int, str], every: int,
             seed: int = 0) -> Outcome:
    """The SAE replay and the dense statistic at the same looks."""
    sae = replay(stream, store, labels, every)
    points = looks(stream, every)
    xa = store.dense([d.text for d in stream.baseline[: stream.length]])
    xb = store.dense([d.text for d in stream.candidate[: stream.length]])
    z = dense_baseline.look_z(xa, xb, points, seed)
    out = Outcome(stream, sae, points, z)
    if stream.prop is not None and sae.final is not None:
        out.planted = planted_shown(sae.final, stream.prop)
    return out


def median_delay(delays: list[int | None]) -> float | None:
    """Median over seeds with "never" as +inf (None when the median itself is never)."""
    values = np.array([np.inf if d is None else d for d in delays], dtype=float)
    med = float(np.median(values)) if len(values) else np.inf
    return None if np.isinf(med) else med
