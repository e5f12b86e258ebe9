"""Real diffs between the shared AlpacaEval version pairs, A/A calibration, and the dense baseline.

For each known pair (baseline model on one half of 300 prompts, candidate on the other half) the
events go through :class:`MonitorState` and :func:`build_report`, as in the daemon, and the top
features are printed with labels, statistics and example snippets. A/A: each model's responses
split into two halves with 10 seeds. Sequential looks: the verdict is re-evaluated every 10 events
per side; the dense baseline (MMD on mean-pooled hidden states) is checked at 5 sample sizes, the
way a fixed-sample test would be used on a stream. Prints Markdown for docs/BENCHMARKS.md and
writes JSON with ``--json``.

    python -m benchmarks.quality.diff_pairs --json /tmp/diff_pairs.json > /tmp/diff_pairs.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from benchmarks.quality.alpaca_codes import (
    ENCODE,
    MODELS,
    PAIRS,
    CodesCache,
    as_batch,
    halves,
    selected_instructions,
)
from saewatch.config import ComparisonSpec, DiffSettings, SaeRef, StateSettings
from saewatch.diff.compare import compare
from saewatch.diff.dense import mmd_test
from saewatch.diff.report import build_report
from saewatch.models import ComparisonKey, ComparisonResult, FeatureCounts, SparseCodes
from saewatch.state.monitor import MonitorState

logger = logging.getLogger("benchmarks.quality.diff_pairs")

SETTINGS = DiffSettings(min_documents=100, top_k=5, examples_per_side=1)
AA_SEEDS = range(1, 11)
LOOK_EVERY = 10
DENSE_LOOKS = (20, 40, 60, 80, 100)


def counts(c: SparseCodes, d: int, version: str) -> FeatureCounts:
    return FeatureCounts(model_id="alpaca_eval", model_version=version, field="response",
                         n_documents=len(c), fired=np.bincount(c.indices, minlength=d),
                         activation_sum=np.zeros(d))


def key(a: str, b: str) -> ComparisonKey:
    return ComparisonKey(model_id="alpaca_eval", field="response", baseline=a, candidate=b)


def first_alarm(ca: SparseCodes, cb: SparseCodes, d: int) -> int | None:
    """Events per side at the first look (every LOOK_EVERY) where the sequential test alarms."""
    for n in range(LOOK_EVERY, min(len(ca), len(cb)) + 1, LOOK_EVERY):
        r = compare(key("a", "b"), counts(ca.take(np.arange(n)), d, "a"),
                    counts(cb.take(np.arange(n)), d, "b"), DiffSettings(min_documents=10))
        if r.sequential_alarm:
            return n
    return None


def dense_any_look(xa: np.ndarray, xb: np.ndarray) -> tuple[bool, list[float]]:
    ps = [mmd_test(xa[:n], xb[:n], n_permutations=200, seed=n).p_value for n in DENSE_LOOKS]
    return any(p < 0.05 for p in ps), [round(p, 4) for p in ps]


def pair_report(cache: CodesCache, labels: dict[int, str], baseline: str,
                candidate: str, dense: bool) -> tuple[ComparisonResult, dict]:
    from saewatch.datasets import read_alpaca

    chosen = selected_instructions()
    first, second = halves(len(chosen), 0)
    state = MonitorState(StateSettings(retrieval_capacity=1_000))
    parts = {}
    # One encoder id for both sides: cache files written by different runs of the same SAE
    # (e.g. before and after it shipped) carry different directory names in their ids.
    encoder_id = cache.codes(baseline, chosen)[1]
    for model, rows in ((baseline, first), (candidate, second)):
        c, _, d = cache.codes(model, chosen)
        texts = read_alpaca(model)
        parts[model] = c.take(rows)
        state.update(as_batch(parts[model], model, model, chosen[rows].tolist(), encoder_id, d,
                              texts=[texts[int(i)].output for i in chosen[rows]]))
    spec = ComparisonSpec(model_id="alpaca_eval", baseline=baseline, candidate=candidate)
    settings = SETTINGS.model_copy(update={"comparisons": [spec], "window_comparisons": False})
    result = build_report(state.view(), settings, labels=labels).comparisons[0]
    extra = {"first_alarm_events_per_side": first_alarm(parts[baseline], parts[candidate], d),
             "mmd_p": None,
             "nnz_mean": float(np.diff(parts[baseline].indptr).mean()), "d_sae": d}
    if dense:
        xa, xb = (cache.dense(m, chosen)[rows] for m, rows in ((baseline, first),
                                                               (candidate, second)))
        extra["mmd_p"] = round(mmd_test(xa, xb, n_permutations=500).p_value, 4)
    return result, extra


def aa_calibration(cache: CodesCache, dense: bool) -> dict:
    chosen = selected_instructions()
    rows, dense_streams = [], []
    for model in MODELS:
        c, _, d = cache.codes(model, chosen)
        x = cache.dense(model, chosen) if dense else None
        for seed in AA_SEEDS:
            a, b = halves(len(c), seed)
            r = compare(key("a", "b"), counts(c.take(a), d, "a"), counts(c.take(b), d, "b"),
                        SETTINGS)
            rows.append({"model": model, "seed": seed, "n_significant": r.n_significant,
                         "alarm": r.sequential_alarm, "drift_score": r.drift_score,
                         "divergence": r.divergence})
            if seed <= 2 and x is not None:
                fired, ps = dense_any_look(x[a], x[b])
                dense_streams.append({"model": model, "seed": seed, "mmd_any_look": fired,
                                      "mmd_p": ps,
                                      "saewatch_alarm": first_alarm(c.take(a), c.take(b), d)})
    return {"runs": rows, "dense_streams": dense_streams}


def markdown(pairs: list[tuple[ComparisonResult, dict]], aa: dict) -> str:
    out = [f"| pair (baseline → candidate, {pairs[0][0].n_baseline} vs {pairs[0][0].n_candidate} prompts) | verdict | significant (q<0.05) | "
           "drift score | JS | alarm after (events/side) | MMD p (dense) |", "|---|---|---|---|---|---|---|"]
    for r, x in pairs:
        out.append(f"| {r.key.baseline} → {r.key.candidate} | {r.verdict} | {r.n_significant} | "
                   f"{r.drift_score:.2f} | {r.divergence:.4f} | {x['first_alarm_events_per_side']} "
                   f"| {x['mmd_p']} |")
    for r, _x in pairs:
        out += ["", f"**{r.key.baseline} → {r.key.candidate}**", "",
                "| | feature | label | freq base → cand | log-odds | q | example |",
                "|---|---|---|---|---|---|---|"]
        for d in (*r.top_up, *r.top_down):
            ex = (d.examples_candidate if d.direction == "up" else d.examples_baseline)
            text = ex[0].text[:90].replace("\n", " ").replace("|", "/") if ex else ""
            out.append(f"| {'▲' if d.direction == 'up' else '▼'} | {d.feature} | {d.label or ''} "
                       f"| {d.freq_baseline:.2f} → {d.freq_candidate:.2f} | "
                       f"{d.log_odds_ratio:+.2f} | {d.q_value:.1e} | {text} |")
    runs = aa["runs"]
    out += ["", f"A/A ({len(runs)} splits): significant features in total "
            f"{sum(r['n_significant'] for r in runs)}, sequential alarms "
            f"{sum(r['alarm'] for r in runs)}, drift score max "
            f"{max(r['drift_score'] for r in runs):.3f}, JS mean "
            f"{np.mean([r['divergence'] for r in runs]):.4f}.",
            f"Repeated looks on {len(aa['dense_streams'])} A/A streams: MMD (p<0.05 at any of "
            f"{len(DENSE_LOOKS)} looks) fired on "
            f"{sum(s['mmd_any_look'] for s in aa['dense_streams'])}; the always-valid test "
            f"(a look every {LOOK_EVERY} events) alarmed on "
            f"{sum(s['saewatch_alarm'] is not None for s in aa['dense_streams'])}."]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--dense", action="store_true", help="also the MMD baseline (2x encoding)")
    p.add_argument("--sae", type=Path, default=None, help="an SAE directory (default: shipped)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from saewatch.encode.default import default_labels_path
    from saewatch.encode.labels import load_labels

    settings = ENCODE.model_copy(update={"sae": SaeRef(path=args.sae)}) if args.sae else ENCODE
    cache = CodesCache(settings)
    labels_path = (args.sae / "feature_labels.json") if args.sae else default_labels_path()
    labels = ({f.feature: f.label for f in load_labels(labels_path).features}
              if labels_path.is_file() else {})
    pairs = [pair_report(cache, labels, a, b, args.dense) for a, b in PAIRS]
    aa = aa_calibration(cache, args.dense)
    if args.json:
        args.json.write_text(json.dumps({"pairs": [{"result": r.model_dump(mode="json"), **x}
                                                   for r, x in pairs], "aa": aa}, indent=1))
    sys.stdout.write(markdown(pairs, aa))


if __name__ == "__main__":
    main()
