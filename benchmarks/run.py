"""``make bench``: every performance benchmark in sequence, results collected in one folder.

Runs ``benchmarks.perf.{encoder,aggregate,clusters,e2e,scaleout}`` and
``benchmarks.quality.crash_trials`` (kill -9 trials) one after the other, each as
its own ``python -m`` process (so none inherits another's threads, memory or BLAS settings),
writes each one's JSON result to ``<out>/<name>.json`` and a ``summary.json`` with the commands,
exit codes, durations, load averages and headline figures, and prints the summary.

``--quick`` is a smoke run: a tiny random model and SAE (built on the fly) for the model-bound
benchmarks, small sizes everywhere, results under ``var/bench-quick`` (not committed). The full
run (default model and shipped SAE) writes ``benchmarks/results/``, cited by docs/BENCHMARKS.md.

    python -m benchmarks.run                      # full run, ~30-40 minutes on 2 cores
    python -m benchmarks.run --quick              # smoke run, a few minutes
    python -m benchmarks.run --only e2e scaleout  # a subset
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.headlines import headline

logger = logging.getLogger("benchmarks.run")

ROOT = Path(__file__).resolve().parents[1]
FULL_OUT = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "var" / "bench-quick"


@dataclass(frozen=True)
class Bench:
    """One benchmark module: its arguments (full and quick) and how it hands back its JSON."""

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    output_flag: str | None  # the flag naming its JSON file; None: it prints JSON on stdout
    model_bound: bool = False  # takes --model/--sae (the quick run gives it the tiny model)
    package: str = "benchmarks.perf"


BENCHES = (
    Bench("encoder", (), ("--events", "8", "--runs", "1", "--max-tokens-per-text", "32",
                          "--batch-tokens", "512"), "--output", model_bound=True),
    # The quick run leaves out the real-codes sections: they need the default model.
    Bench("aggregate", (), ("--runs", "1", "--warmup", "2560", "--events", "2560", "--also-batches",
                            "--memory-events", "25600", "51200",
                            "--sections", "throughput", "memory", "diff"), "--json"),
    Bench("clusters", (), ("--n", "2400", "--runs", "1", "--raw-limit", "100"), None),
    Bench("e2e", (), ("--quick",), "--json", model_bound=True),
    Bench("scaleout", (), ("--quick",), "--json", model_bound=True),
    Bench("crash_trials", (), ("--streams", "1", "--kills", "2", "--events", "20", "--rate", "2"),
          "--json", package="benchmarks.quality"),
)


@dataclass
class Outcome:
    name: str
    command: list[str]
    returncode: int
    seconds: float
    loadavg_before: list[float]
    loadavg_after: list[float]
    result: dict[str, object] | None

    def as_dict(self) -> dict[str, object]:
        return {
            "command": " ".join(self.command),
            "returncode": self.returncode,
            "seconds": round(self.seconds, 1),
            "loadavg_before": self.loadavg_before,
            "loadavg_after": self.loadavg_after,
            "headline": headline(self.name, self.result) if self.result else None,
        }


def command_for(bench: Bench, quick: bool, out: Path, model_args: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", f"{bench.package}.{bench.name}",
           *(bench.quick if quick else bench.full)]
    if bench.model_bound:
        cmd += model_args
    if bench.output_flag is not None:
        cmd += [bench.output_flag, str(out / f"{bench.name}.json")]
    return cmd


def run_one(bench: Bench, cmd: list[str], out: Path) -> Outcome:
    """Run one benchmark (its logs stream to our stderr) and read its JSON result back."""
    logger.info("=== %s: %s", bench.name, " ".join(cmd))
    before = _loadavg()
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.monotonic() - started
    target = out / f"{bench.name}.json"
    result: dict[str, object] | None = None
    if done.returncode == 0:
        if bench.output_flag is None:
            target.write_text(done.stdout)
        result = json.loads(target.read_text())
    else:
        logger.error("%s failed with exit code %d", bench.name, done.returncode)
    logger.info("=== %s: done in %.0fs", bench.name, seconds)
    return Outcome(bench.name, cmd, done.returncode, seconds, before, _loadavg(), result)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def model_arguments(args: argparse.Namespace, scratch: Path) -> list[str]:
    """``--model``/``--sae`` for the model-bound benchmarks (the tiny pair in a quick run)."""
    if args.quick and args.model is None and args.sae is None:
        from benchmarks.perf.streams import build_tiny_model

        model, sae = build_tiny_model(scratch / "tiny")
        return ["--model", str(model), "--sae", str(sae)]
    out = []
    if args.model is not None:
        out += ["--model", args.model]
    if args.sae is not None:
        out += ["--sae", str(args.sae)]
    return out


def summarize(
    outcomes: list[Outcome], quick: bool, started: datetime, previous: Path
) -> dict[str, object]:
    """This run's outcomes, over those of earlier runs into the same folder (``--only``)."""
    benchmarks: dict[str, object] = {}
    if previous.is_file():
        benchmarks = json.loads(previous.read_text()).get("benchmarks", {})
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for o in outcomes:
        benchmarks[o.name] = o.as_dict() | {"finished": now}
    return {
        "quick": quick,
        "started": started.isoformat(timespec="seconds"),
        "finished": now,
        "cores": os.cpu_count(),
        "benchmarks": benchmarks,
    }


def render(summary: dict[str, object]) -> str:
    """The summary as a short markdown table."""
    lines = ["| benchmark | exit | seconds | load (1 min) | headline |", "|---|---|---|---|---|"]
    for name, b in summary["benchmarks"].items():  # type: ignore[attr-defined]
        figures = b["headline"] or {}
        text = ", ".join(f"{k}={v}" for k, v in figures.items()) or "(no result)"
        lines.append(f"| {name} | {b['returncode']} | {b['seconds']} | "
                     f"{b['loadavg_before'][0]} | {text} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny model, small sizes")
    p.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], default=None)
    p.add_argument("--out", type=Path, default=None,
                   help=f"results folder (default {FULL_OUT.relative_to(ROOT)}, "
                        f"or {QUICK_OUT.relative_to(ROOT)} with --quick)")
    p.add_argument("--model", default=None, help="model directory for encoder/e2e/scaleout")
    p.add_argument("--sae", type=Path, default=None, help="SAE directory for encoder/e2e/scaleout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    out = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="saewatch-bench-") as scratch:
        model_args = model_arguments(args, Path(scratch))
        for bench in BENCHES:
            if args.only is None or bench.name in args.only:
                cmd = command_for(bench, args.quick, out, model_args)
                outcomes.append(run_one(bench, cmd, out))
    summary = summarize(outcomes, args.quick, started, out / "summary.json")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = render(summary)
    (out / "summary.md").write_text(table + "\n")
    sys.stdout.write(f"results in {out}\n{table}\n")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
