"""False alarms over a whole stream: the always-valid test vs re-running a fixed-sample test.

Simulated A/A streams (both sides draw every feature from the same heavy-tailed frequencies,
``Beta(0.5, 8)``, d features) are looked at every ``--step`` documents per side up to ``--n``.
For each stream we record whether it *ever* alarmed:

* ``always_valid``: ``compare``'s verdict (mixture SPRT, Bonferroni over features, ``alpha``);
* ``bh_any_look``: "some feature has q < 0.05" — the fixed-sample BH rule re-checked at every look.

Also the power side: the same streams with 5 features shifted by +0.05 / +0.10, and the events per
side needed before the alarm. Seeded; prints JSON.

    python -m benchmarks.quality.sequential_aa --streams 200
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from saewatch.config import DiffSettings
from saewatch.diff.compare import compare
from saewatch.models import ComparisonKey, FeatureCounts

KEY = ComparisonKey(model_id="m", field="response", baseline="a", candidate="b")


def counts(fired: np.ndarray, n: int, version: str) -> FeatureCounts:
    return FeatureCounts(model_id="m", model_version=version, field="response", n_documents=n,
                         fired=fired, activation_sum=np.zeros(len(fired)))


def stream(rng: np.random.Generator, fa: np.ndarray, fb: np.ndarray, n: int, step: int,
           settings: DiffSettings) -> tuple[int | None, int | None]:
    """First look (events per side) of the always-valid alarm and of 'any BH q < level'."""
    a = np.zeros(len(fa), dtype=np.int64)
    b = np.zeros(len(fb), dtype=np.int64)
    seq, bh = None, None
    for m in range(step, n + 1, step):
        a += rng.binomial(step, fa)
        b += rng.binomial(step, fb)
        r = compare(KEY, counts(a, m, "a"), counts(b, m, "b"), settings)
        seq = seq or (m if r.sequential_alarm else None)
        bh = bh or (m if r.n_significant else None)
    return seq, bh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--features", type=int, default=2048)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--step", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.01)
    args = p.parse_args()
    settings = DiffSettings(min_documents=args.step, alpha=args.alpha)
    rng = np.random.default_rng(0)
    out: dict[str, dict] = {}
    for name, shift in (("aa", 0.0), ("shift_0.05", 0.05), ("shift_0.10", 0.10)):
        seq_hits, bh_hits = [], []
        for _ in range(args.streams if shift == 0 else max(10, args.streams // 5)):
            fa = rng.beta(0.5, 8, size=args.features)
            fb = fa.copy()
            fb[:5] = np.minimum(fb[:5] + shift, 1.0)
            seq, bh = stream(rng, fa, fb, args.n, args.step, settings)
            seq_hits.append(seq)
            bh_hits.append(bh)
        alarmed = [s for s in seq_hits if s is not None]
        out[name] = {
            "streams": len(seq_hits),
            "always_valid_alarm_rate": round(len(alarmed) / len(seq_hits), 3),
            "bh_any_look_rate": round(sum(b is not None for b in bh_hits) / len(bh_hits), 3),
            "median_events_to_alarm": float(np.median(alarmed)) if alarmed else None,
        }
    sys.stdout.write(json.dumps({"settings": vars(args), "results": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
