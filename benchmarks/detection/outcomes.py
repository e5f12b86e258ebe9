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
from benchmarks.detection.sentence_peer import SentenceEmbedder
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
    sentence_z: list[float] | None = None  # the MiniLM sentence-embedding MMD, where run
    release: Replay | None = None  # the same stream as a release (pairs only)

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
                "first_bet_alarm": self.sae.first("bet_alarm"),
                "first_feature_alarm": self.sae.first("alarm"),
                "first_descriptor_moved": self.sae.first("descriptor_moved"),
                "bet_peak_log_evidence": round(max(k.bet_log_evidence for k in self.sae.looks),
                                               2),
                "first_drift_release": self.release.first_drift if self.release else None,
                "top_findings": top_findings(final),
                "n_themes": len(final.themes), "n_significant_themes": final.n_significant_themes,
                "final_verdict": final.verdict, "final_n_significant": final.n_significant,
                "max_n_significant": max(k.n_significant for k in self.sae.looks),
                "drift_score": final.drift_score,
                "top_up": [_feature(d) for d in final.top_up[:TOP_SHOWN]],
                "top_down": [_feature(d) for d in final.top_down[:TOP_SHOWN]],
            },
            "dense": {"max_z": self.dense_max_z,
                      "z": [round(z, 3) for z in self.dense_z]},
            **({"sentence": {"max_z": max(self.sentence_z),
                             "z": [round(z, 3) for z in self.sentence_z]}}
               if self.sentence_z else {}),
            "looks": self.points,
            **({"planted": self.planted} if self.planted else {}),
        }


def top_findings(result: ComparisonResult, k: int = TOP_SHOWN) -> list[dict[str, Any]]:
    """What an operator reads first, in the report's order: moved descriptors (in words),
    then the features with the largest change of share (both directions)."""
    out: list[dict[str, Any]] = [{"kind": "descriptor", "descriptor": d.descriptor,
                                  "direction": d.direction, "text": d.text}
                                 for d in result.moved_descriptors]
    features = sorted([*result.top_up, *result.top_down],
                      key=lambda d: -abs(d.freq_candidate - d.freq_baseline))
    out += [{"kind": "feature", **_feature(d), "direction": d.direction} for d in features]
    return out[:k]


def _feature(d: FeatureDelta) -> dict[str, Any]:
    example = (d.examples_candidate if d.direction == "up" else d.examples_baseline)
    return {"feature": d.feature, "label": d.label, "freq_baseline": round(d.freq_baseline, 3),
            "freq_candidate": round(d.freq_candidate, 3), "q": d.q_value,
            "example": example[0].text[:120] if example else None}


def planted_shown(result: ComparisonResult, prop: PlantedProperty) -> dict[str, Any]:
    """Whether a top-5 ``up`` feature's candidate examples show the planted property.

    An example shows it when it is a planted event *and* the marker is in its snippet (what an
    operator reads). Features whose examples are planted events at all are counted too.
    """
    tag = f"+{prop.name}"
    with_planted, shown = [], []
    for d in result.top_up[:TOP_SHOWN]:
        planted = [s for s in d.examples_candidate if s.event_id.endswith(tag)]
        if planted:
            with_planted.append(d.feature)
        if any(prop.marker in s.text for s in planted):
            shown.append({"feature": d.feature, "label": d.label,
                          "snippet": next(s.text for s in planted if prop.marker in s.text)[:160]})
    return {"top_up": len(result.top_up[:TOP_SHOWN]), "features_with_planted_examples": with_planted,
            "shown": bool(shown), "shown_by": shown[:3]}


def evaluate(stream: Stream, store: CodeStore, labels: Mapping[int, str], every: int,
             seed: int = 0, sentences: SentenceEmbedder | None = None) -> Outcome:
    """The SAE replay (canary order, and for real pairs also as a release) and the dense
    statistics (same-layer activations, and MiniLM sentence embeddings) at the same looks."""
    sae = replay(stream, store, labels, every)
    points = looks(stream, every)
    base = [d.text for d in stream.baseline[: stream.length]]
    cand = [d.text for d in stream.candidate[: stream.length]]
    z = dense_baseline.look_z(store.dense(base), store.dense(cand), points, seed)
    out = Outcome(stream, sae, points, z)
    if sentences is not None:
        out.sentence_z = dense_baseline.look_z(sentences.embed(base), sentences.embed(cand),
                                               points, seed)
    if stream.scenario == "pair":
        out.release = replay(stream, store, labels, every, release=True)
    if stream.prop is not None and sae.final is not None:
        out.planted = planted_shown(sae.final, stream.prop)
    return out


def median_delay(delays: list[int | None]) -> float | None:
    """Median over seeds with "never" as +inf (None when the median itself is never)."""
    values = np.array([np.inf if d is None else d for d in delays], dtype=float)
    med = float(np.median(values)) if len(values) else np.inf
    return None if np.isinf(med) else med
