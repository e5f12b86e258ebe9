"""Two detection runs side by side (e.g. two SAEs on the same streams): one markdown table.

    python -m benchmarks.detection.compare old=docs/detection_results.json \
        new=var/detect-8k/detection_results.json

Per group of streams (each real pair, each planted property and prevalence, the A/A models) it
gives the SAE verdict's first drift per seed and its median, and how often a planted property
shows in a top finding's examples; then totals: A/A alarms (cached and resampled streams),
drift streams caught, and the summed delay with a miss counted as the stream's length, so one
number says which run detects more and sooner at the same false alarms.

>>> _median_delay([30, None, 50], 150)
50
>>> _cell([30, None], 150)
'30, – (median 90)'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.detection.report import per_seed


def _median_delay(delays: Sequence[int | None], length: int) -> int:
    """The median first drift, a miss counted as ``length`` (so "> length" shows as length)."""
    return int(statistics.median([length if d is None else d for d in delays]))


def _cell(delays: Sequence[int | None], length: int) -> str:
    return f"{per_seed(delays)} (median {_median_delay(delays, length)})"


def _group(row: dict[str, Any]) -> str:
    p = row["params"]
    if row["scenario"] == "pair":
        return f"pair {p['baseline']} → {p['candidate']}"
    if row["scenario"] == "planted":
        return f"planted {p['property']} {p['prevalence']:.0%}"
    return f"A/A {p['model']}"


def groups(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in results["streams"]:
        out.setdefault(_group(row), []).append(row)
    return out


def totals(results: dict[str, Any]) -> dict[str, Any]:
    rows = results["streams"]
    drift = [r for r in rows if r["scenario"] != "aa"]
    sim = results.get("aa_simulated", {})
    return {
        "aa_alarms": sum(r["sae"]["any_alarm"] for r in rows if r["scenario"] == "aa"),
        "aa_streams": sum(r["scenario"] == "aa" for r in rows),
        "aa_simulated": f"{sim.get('drift_streams', '?')}/{sim.get('streams', '?')}",
        "caught": sum(r["sae"]["first_drift"] is not None for r in drift),
        "drift_streams": len(drift),
        "summed_delay": sum(r["events_per_side"] if r["sae"]["first_drift"] is None
                            else r["sae"]["first_drift"] for r in drift),
        "shown": sum(bool(r.get("planted", {}).get("shown")) for r in drift
                     if r["scenario"] == "planted"),
        "planted": sum(r["scenario"] == "planted" for r in drift),
    }


def markdown(runs: dict[str, dict[str, Any]]) -> str:
    names = list(runs)
    lines = [" | ".join(["| streams", *(f"{n}: SAE first drift per seed" for n in names)]) + " |",
             "|---" * (len(names) + 1) + "|"]
    per_run = {n: groups(r) for n, r in runs.items()}
    for g in per_run[names[0]]:
        cells = []
        for n in names:
            rows = per_run[n].get(g, [])
            if not rows:
                cells.append("not run")
                continue
            if rows[0]["scenario"] == "aa":
                cells.append(f"{sum(r['sae']['any_alarm'] for r in rows)} of {len(rows)} alarmed")
                continue
            cell = _cell([r["sae"]["first_drift"] for r in rows], rows[0]["events_per_side"])
            if rows[0]["scenario"] == "planted":
                cell += f", shown {sum(bool(r['planted']['shown']) for r in rows)}/{len(rows)}"
            cells.append(cell)
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += ["", "| total | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    t = [totals(r) for r in runs.values()]
    lines += [
        "| A/A streams alarmed (cached; resampled) | " + " | ".join(
            f"{v['aa_alarms']}/{v['aa_streams']}; {v['aa_simulated']}" for v in t) + " |",
        "| drift streams caught | " + " | ".join(
            f"{v['caught']}/{v['drift_streams']}" for v in t) + " |",
        "| summed delay, a miss as the stream length (events/side) | " + " | ".join(
            str(v["summed_delay"]) for v in t) + " |",
        "| planted property in a top finding's examples | " + " | ".join(
            f"{v['shown']}/{v['planted']}" for v in t) + " |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="NAME=FILE", help="detection_results.json files")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        runs[name] = json.loads(Path(path).read_text())
    sys.stdout.write(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
