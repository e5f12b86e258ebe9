"""Many A/A streams resampled from real responses: the verdict's false-alarm rate, measured.

The 20 A/A streams of the main run show "no alarm" on a handful of splits; the guarantee is a
*rate* (≤ ``diff.alpha`` over a whole stream, however often it is looked at), which needs many
streams to check. Each simulated stream takes one A/A model's cached responses, shuffles them
with its own seed, gives the first half to "baseline" and the second to "candidate", and is
replayed through the daemon's path (:func:`benchmarks.detection.simulate.replay`), looked at
``LOOKS`` times; odd streams arrive as a release (baseline first), even ones as a canary.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from scipy.stats import beta

from benchmarks.detection.cache import CodeStore
from benchmarks.detection.scenarios import Doc, Plan, Stream, responses
from benchmarks.detection.simulate import diff_settings, replay

logger = logging.getLogger(__name__)

LOOKS = 20
PER_SIDE = 100


def simulated_aa(plan: Plan, store: CodeStore, streams: int) -> dict[str, Any]:
    """Alarms over ``streams`` resampled A/A streams, with a 95% upper bound on the rate."""
    began = time.monotonic()
    cached = {m: [t for t in responses(m) if store.has(t)] for m in plan.aa_models}
    per_side = min(PER_SIDE, *(len(t) // 2 for t in cached.values()))
    every = max(1, per_side // LOOKS)
    drift = bets = family = 0
    for i in range(streams):
        model = plan.aa_models[i % len(plan.aa_models)]
        texts = cached[model]
        order = np.random.default_rng(10_000 + i).permutation(len(texts))[: 2 * per_side]
        docs = [Doc(f"{model}:{int(j)}", texts[int(j)]) for j in order]
        stream = Stream("aa", f"sim {i}", tuple(docs[:per_side]), tuple(docs[per_side:]),
                        {"model": model, "seed": 10_000 + i})
        run = replay(stream, store, {}, every, release=bool(i % 2))
        drift += run.first_drift is not None
        bets += run.first("bet_alarm") is not None
        family += any(k.alarm or k.descriptor_moved for k in run.looks)
    alpha = diff_settings().alpha
    return {
        "streams": streams, "events_per_side": per_side, "looks": len(range(every, per_side + 1,
                                                                            every)),
        "alpha": alpha, "drift_streams": drift, "bet_alarm_streams": bets,
        "family_alarm_streams": family, "rate": drift / max(streams, 1),
        # Clopper-Pearson: the rate is below this with 95% confidence.
        "rate_upper_95": float(beta.ppf(0.95, drift + 1, max(streams - drift, 1)))
        if streams else None,
        "within_alpha": drift / max(streams, 1) <= alpha,
        "seconds": round(time.monotonic() - began, 1),
    }
