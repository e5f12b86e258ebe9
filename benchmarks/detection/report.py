"""Markdown tables and the delay-vs-prevalence plot from the run's JSON results."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.detection.outcomes import median_delay

logger = logging.getLogger(__name__)

Row = dict[str, Any]


def per_seed(values: Sequence[int | None]) -> str:
    """First drift (or alarm) per seed, "–" where there was none."""
    return ", ".join("–" if v is None else str(v) for v in values)


def _med(values: list[int | None], cap: int) -> str:
    m = median_delay(values)
    return f"> {cap}" if m is None else f"{m:g}"


def _by(rows: list[Row], scenario: str, *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in rows:
        if r["scenario"] == scenario:
            groups[tuple(r["params"][k] for k in keys)].append(r)
    return groups


def _peer(r: Row, name: str) -> int | None:
    found: int | None = r.get(name, {}).get("first_alarm")
    return found


def aa_table(rows: list[Row]) -> list[str]:
    out = ["| model | streams | events/side | SAE alerts (any look) | significant at end "
           "(per stream) | max significant at any look | peak log e (pooled test) | "
           "dense max z | sentence max z |",
           "|---|---|---|---|---|---|---|---|---|"]
    for (model,), group in sorted(_by(rows, "aa", "model").items()):
        sentence = [r["sentence"]["max_z"] for r in group if "sentence" in r]
        out.append(
            f"| {model} | {len(group)} | {group[0]['events_per_side']} | "
            f"{sum(r['sae']['any_alarm'] for r in group)} | "
            f"{', '.join(str(r['sae']['final_n_significant']) for r in group)} | "
            f"{max(r['sae']['max_n_significant'] for r in group)} | "
            f"{max(r['sae']['bet_peak_log_evidence'] for r in group):.1f} | "
            f"{max(r['dense']['max_z'] for r in group):.2f} | "
            + (f"{max(sentence):.2f} |" if sentence else "– |"))
    return out


def simulated_aa(results: dict[str, Any]) -> list[str]:
    sim = results.get("aa_simulated")
    if not sim:
        return []
    return [
        f"{sim['streams']} more A/A streams resampled from the A/A models' responses "
        f"({sim['events_per_side']} events per side, {sim['looks']} looks each, half as a "
        f"release, half as a canary): **{sim['drift_streams']} drift verdicts** "
        f"(pooled test {sim['bet_alarm_streams']}, per-feature/descriptor family "
        f"{sim['family_alarm_streams']}); rate {sim['rate']:.3f} "
        f"(95% upper bound {sim['rate_upper_95']:.3f}) against alpha = {sim['alpha']} — "
        + ("within alpha." if sim["within_alpha"] else "**above alpha**."),
        "",
    ]


def pair_table(rows: list[Row], threshold: float) -> list[str]:
    out = ["| baseline → candidate | events/side | SAE delay (per seed) | SAE median | "
           "SAE as a release (per seed) | dense delay (per seed) | dense median | "
           "sentence delay (per seed) | sentence median | significant at end (median) | "
           "first finding |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (base, cand), group in _by(rows, "pair", "baseline", "candidate").items():
        n = group[0]["events_per_side"]
        sae = [r["sae"]["first_drift"] for r in group]
        release = [r["sae"].get("first_drift_release") for r in group]
        dense = [_peer(r, "dense") for r in group]
        sentence = [_peer(r, "sentence") for r in group]
        sig = sorted(r["sae"]["final_n_significant"] for r in group)[len(group) // 2]
        first = group[0]["sae"].get("top_findings") or [{}]
        said = first[0].get("text") or (
            f"#{first[0]['feature']} {first[0].get('label') or ''}"[:50] if first[0] else "–")
        out.append(f"| {base} → {cand} | {n} | {per_seed(sae)} | {_med(sae, n)} | "
                   f"{per_seed(release)} | {per_seed(dense)} | {_med(dense, n)} | "
                   f"{per_seed(sentence)} | {_med(sentence, n)} | {sig} | "
                   f"{said.replace('|', '/')} |")
    return out


def top_features(rows: list[Row], k: int = 3) -> list[str]:
    out = ["| pair (first seed) | ▲ more frequent in candidate | ▼ less frequent |", "|---|---|---|"]
    for (base, cand), group in _by(rows, "pair", "baseline", "candidate").items():
        sae = group[0]["sae"]
        cells = [" · ".join(f"#{f['feature']} {(f['label'] or '')[:40]} "
                            f"({f['freq_baseline']:.2f}→{f['freq_candidate']:.2f})"
                            for f in sae[side][:k]).replace("|", "/") or "–"
                 for side in ("top_up", "top_down")]
        out.append(f"| {base} → {cand} | {cells[0]} | {cells[1]} |")
    return out


def planted_table(rows: list[Row]) -> list[str]:
    out = ["| property | p | planted events/seed | SAE delay (per seed) | SAE median | "
           "dense delay (per seed) | dense median | sentence median | "
           "shown in a top-5 feature's examples |",
           "|---|---|---|---|---|---|---|---|---|"]
    for (prop, p), group in _by(rows, "planted", "property", "prevalence").items():
        n = group[0]["events_per_side"]
        sae = [r["sae"]["first_drift"] for r in group]
        dense = [_peer(r, "dense") for r in group]
        sentence = [_peer(r, "sentence") for r in group]
        shown = sum(r["planted"]["shown"] for r in group)
        out.append(f"| {prop} | {p:.0%} | {group[0]['params']['planted']} | {per_seed(sae)} | "
                   f"{_med(sae, n)} | {per_seed(dense)} | {_med(dense, n)} | "
                   f"{_med(sentence, n) if any('sentence' in r for r in group) else '–'} | "
                   f"{shown}/{len(group)} |")
    return out


def preamble(results: dict[str, Any]) -> list[str]:
    s, eq, cal = results["setup"], results["equivalence"], results["dense_calibration"]
    paths = [p for p in ("file", "kafka") if p in eq]
    sim = eq["simulation"]
    return [
        f"Encoder `{s['encoder_id']}` (d_sae {s['d_sae']}), {s['max_tokens_per_text']} tokens "
        f"per response ({s['truncated_share']:.0%} of the responses are longer and cut there), "
        f"precision {s['precision']}; a look every {s['look_every']} events per "
        f"side; {s['texts_cached']} distinct texts cached ("
        + (f"{s['texts_encoded_now']} encoded in this run, {s['texts_per_second']} texts/s"
           if s["texts_per_second"] else "all read from the cache")
        + f"); replay of all streams "
        f"{s['simulate_seconds']} s; {s['machine']}.",
        "",
        f"Equivalence check ({eq['scenario']}, {eq['events']} events): App over "
        f"{' and '.join(paths)} gave the same per-version counts, verdict "
        f"({sim['verdict']}), {sim['n_significant']} significant features and top features as "
        f"the cached simulation: " + ", ".join(
            f"{p} {'equal' if eq[p]['equal'] else 'DIFFERENT'}"
            + (f" ({eq[p]['flips']} near-threshold firing flips: bf16 batching)"
               if eq[p].get("flips") else "") for p in paths) + ".",
        "",
        f"Dense baseline: threshold z > {cal['threshold']:.2f} makes {cal['dense_aa_alarms']} of "
        f"{cal['aa_streams']} A/A streams alarm, as many as the SAE verdict "
        f"({cal['sae_aa_alarms']}); {cal['permutations']} permutations per look."
        + (f" Sentence-embedding peer (all-MiniLM-L6-v2, the same MMD): threshold z > "
           f"{results['sentence_calibration']['threshold']:.2f}."
           if "sentence_calibration" in results else ""),
        "",
    ]


def markdown(results: dict[str, Any]) -> str:
    rows = results["streams"]
    cal = results["dense_calibration"]
    lines = [*preamble(results), "### A/A (no drift)", "", *aa_table(rows), "",
             *simulated_aa(results),
             "### Real version pairs", "", *pair_table(rows, cal["threshold"]), "",
             *top_features(rows), "",
             "### Planted properties", "", *planted_table(rows), ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Median delay vs prevalence per planted property, SAE vs dense (never = above the top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by(results["streams"], "planted", "property", "prevalence")
    props = list(dict.fromkeys(k[0] for k in groups))
    fig, axes = plt.subplots(1, len(props), figsize=(3.2 * len(props), 3.2), sharey=True,
                             squeeze=False)
    cap = max(r["events_per_side"] for r in results["streams"] if r["scenario"] == "planted")
    for ax, prop in zip(axes[0], props, strict=True):
        ps = sorted(p for (name, p) in groups if name == prop)
        for method, style in (("sae", "o-"), ("dense", "s--")):
            key = "first_drift" if method == "sae" else "first_alarm"
            ys = [median_delay([r[method][key] for r in groups[(prop, p)]]) for p in ps]
            ax.plot([p * 100 for p in ps], [cap * 1.15 if y is None else y for y in ys], style,
                    label="SAE verdict" if method == "sae" else "dense MMD (calibrated)")
        ax.axhline(cap, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xticks([p * 100 for p in ps], [f"{p:.0%}" for p in ps])
        ax.set_title(prop, fontsize=9)
        ax.set_xlabel("prevalence")
    axes[0][0].set_ylabel("median events/side to alarm\n(above dotted line: never)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
