"""State and diff speed on one core: events/s of ``MonitorState.update``, memory vs events, diff time.

Measured on one pinned core (BLAS threads = 1) with synthetic sparse codes: heavy-tailed (Zipf)
feature frequencies, ``--nnz`` features per response document and half as many per prompt, two
model versions and a metadata label, batches of ``--batch`` events; and on the shipped SAE's
real codes of real events (:mod:`benchmarks.perf.capacity`). Every timing is the median of
``--runs`` runs after a warm-up.

Sections:

* ``throughput``: ``MonitorState.update`` events/s on synthetic codes after ``--warmup``
  events, and each component's share (µs per event, measured on its own on the same batches);
  repeated with the batch sizes of ``--also-batches`` (``throughput_by_batch``: per-batch
  overhead);
* ``real``: the same on ``--real-events`` real events (prompts and responses of the demo
  sample at 256 tokens), raw codes and presence-thresholded codes side by side, with every
  component timed in the same pass (:func:`benchmarks.perf.capacity.real_section`);
* ``features``: ``saewatch aggregate``'s work per poll of ``--poll`` features messages besides
  Kafka: decode and check each message, assemble, update (thresholded real codes);
* ``memory``: peak RSS of a fresh process after feeding N events (flat once the retrieval ring
  is full; everything else is bounded by d_sae, keys and windows);
* ``diff``: ``compare`` time per comparison for d_sae 16,384 and 65,536;
* ``descriptors``: text-descriptor cost on real AlpacaEval texts (claude-2.1's prompts and
  responses, ~1,100 characters per response): extraction alone and the whole
  ``DescriptorCounter.update`` (extraction, bucketing, cumulative and window histograms), µs per
  event, beside the same run's ``MonitorState.update`` on synthetic codes (the ``throughput``
  section's ``us_per_event["descriptors"]`` is measured on placeholder texts).

Run::

    python -m benchmarks.perf.aggregate                 # all sections, prints a JSON summary
    python -m benchmarks.perf.aggregate --sections diff --runs 7
    python -m benchmarks.perf.aggregate --sections real features   # capacity on real codes
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core means one BLAS thread too; must precede numpy's import

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.perf.capacity import features_section, real_section  # noqa: E402
from benchmarks.perf.real_codes import load_real_codes  # noqa: E402
from saewatch.config import DiffSettings, StateSettings  # noqa: E402
from saewatch.diff.compare import compare  # noqa: E402
from saewatch.models import ComparisonKey, FeatureBatch, FeatureCounts, LLMEvent  # noqa: E402
from saewatch.state.descriptor_counts import DescriptorCounter  # noqa: E402
from saewatch.state.descriptors import extract_descriptors  # noqa: E402
from saewatch.state.monitor import MonitorState  # noqa: E402
from saewatch.state.testing import T0, random_codes  # noqa: E402

logger = logging.getLogger("benchmarks.perf.aggregate")

POOL = 16  # distinct code batches cycled through (generating codes is slower than folding them)


def make_batches(n_batches: int, batch: int, d_sae: int, nnz: int, seed: int) -> list[FeatureBatch]:
    """``n_batches`` batches cycling over a pool of synthetic code batches."""
    rng = np.random.default_rng(seed)
    pool = [(random_codes(batch, d_sae, max(1, nnz // 2), rng), random_codes(batch, d_sae, nnz, rng))
            for _ in range(POOL)]
    out = []
    for j in range(n_batches):
        prompt, response = pool[j % len(pool)]
        events = tuple(
            LLMEvent(
                event_id=f"e{j * batch + i}",
                model_id="bench",
                timestamp=T0 + timedelta(seconds=0.01 * (j * batch + i)),
                model_version=f"v{i % 2}",
                prompt="p" * 300,
                response="r" * 900,
                metadata={"tenant": f"t{i % 4}"},
            )
            for i in range(batch)
        )
        out.append(
            FeatureBatch(
                encoder_id="bench", d_sae=d_sae, events=events, prompt=prompt, response=response
            )
        )
    return out


def throughput(args: argparse.Namespace) -> dict:
    batches = make_batches((args.warmup + args.events) // args.batch, args.batch, args.d_sae,
                           args.nnz, 0)
    warm, timed = batches[: args.warmup // args.batch], batches[args.warmup // args.batch :]
    n_timed = len(timed) * args.batch
    rates, parts = [], {}
    for run in range(args.runs):
        state = MonitorState(StateSettings())
        for b in warm:
            state.update(b)
        start = time.perf_counter()
        for b in timed:
            state.update(b)
        rates.append(n_timed / (time.perf_counter() - start))
        if run == 0:
            parts = {name: _component_us(part, timed) for name, part in state._parts.items()}
    nnz = float(np.mean([np.diff(b.response.indptr).mean() for b in timed]))
    return {
        "events_per_s": statistics.median(rates),
        "runs": [round(r) for r in rates],
        "us_per_event": parts,
        "response_nnz": nnz,
        "batch": args.batch,
        "timed_events": n_timed,
        "warmup_events": args.warmup,
    }


def _component_us(part: object, batches: list[FeatureBatch]) -> float:
    start = time.perf_counter()
    for b in batches:
        part.update(b)  # type: ignore[attr-defined]
    return round(1e6 * (time.perf_counter() - start) / (len(batches) * len(batches[0])), 2)


def memory(args: argparse.Namespace) -> dict:
    out = {}
    for n in args.memory_events:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.perf.aggregate",
            "--memory-child",
            str(n),
            "--d-sae",
            str(args.d_sae),
            "--nnz",
            str(args.nnz),
            "--batch",
            str(args.batch),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[n] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _status_mib(field: str) -> float:
    """A memory figure of /proc/self/status (VmRSS: now, VmHWM: this process' peak), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    """Current resident set size (VmRSS), MiB."""
    return _status_mib("VmRSS")


def memory_child(args: argparse.Namespace) -> dict:
    pool = make_batches(POOL, args.batch, args.d_sae, args.nnz, 1)
    base = _rss_mib()
    state = MonitorState(StateSettings())
    for j in range(args.memory_child // args.batch):
        b = pool[j % POOL]
        events = tuple(
            e.model_copy(update={"event_id": f"e{j}-{i}",
                                 "timestamp": T0 + timedelta(seconds=0.01 * (j * args.batch + i))})
            for i, e in enumerate(b.events))
        state.update(b.model_copy(update={"events": events}))
    peak = _status_mib("VmHWM")  # not ru_maxrss: that keeps the parent's peak across fork+exec
    return {"rss_mib": round(_rss_mib(), 1), "state_mib": round(_rss_mib() - base, 1),
            "peak_rss_mib": round(peak, 1)}


def diff_time(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(2)
    out = {}
    for d in (16_384, 65_536):
        freq = rng.beta(0.3, 10, size=d)
        side = [
            FeatureCounts(
                model_id="m",
                model_version=v,
                field="response",
                n_documents=20_000,
                fired=rng.binomial(20_000, freq),
                activation_sum=np.zeros(d),
            )
            for v in ("a", "b")
        ]
        key = ComparisonKey(model_id="m", field="response", baseline="a", candidate="b")
        times = []
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            compare(key, side[0], side[1], DiffSettings())
            times.append(time.perf_counter() - start)
        out[d] = {"median_ms": round(1e3 * statistics.median(times[1:]), 1)}
    return out


def descriptor_cost(args: argparse.Namespace) -> dict:
    from saewatch.datasets import alpaca_events

    events = alpaca_events("claude-2.1", model_id="bench")
    real = [events[i : i + args.batch] for i in range(0, len(events) - args.batch + 1, args.batch)]
    synthetic = make_batches(len(real), args.batch, args.d_sae, args.nnz, 3)
    batches = [b.model_copy(update={"events": tuple(e)}) for b, e in zip(synthetic, real, strict=True)]
    n = len(batches) * args.batch
    # Past the clusters' warm-up (river learns from every event of the first 2,000): steady state.
    warm = make_batches(StateSettings().cluster_warmup_events // args.batch + 2, args.batch,
                        args.d_sae, args.nnz, 4)
    extract, update, state_us = [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        for b in batches:
            for field in ("prompt", "response"):
                texts = [e.prompt if field == "prompt" else e.response for e in b.events]
                extract_descriptors(texts, b.codes(field).n_tokens)
        extract.append(1e6 * (time.perf_counter() - start) / n)
        counter = DescriptorCounter(StateSettings().windows)
        start = time.perf_counter()
        for b in batches:
            counter.update(b)
        update.append(1e6 * (time.perf_counter() - start) / n)
        state = MonitorState(StateSettings())
        for b in warm:
            state.update(b)
        start = time.perf_counter()
        for b in batches:
            state.update(b)
        state_us.append(1e6 * (time.perf_counter() - start) / n)
    chars = float(np.mean([len(e.response) for e in events]))
    return {"extract_us_per_event": round(statistics.median(extract), 2),
            "update_us_per_event": round(statistics.median(update), 2),
            "state_update_us_per_event": round(statistics.median(state_us), 2),
            "share_of_state_update": round(statistics.median(update)
                                           / statistics.median(state_us), 3),
            "response_chars_mean": round(chars), "events": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--nnz", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--also-batches", type=int, nargs="*", default=[64],
                   help="further batch sizes for the throughput section (the source's default 64)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=12_800)
    p.add_argument("--events", type=int, default=12_800)
    p.add_argument("--real-events", type=int, default=512,
                   help="real events (sections real, features); missing codes are encoded once")
    p.add_argument("--poll", type=int, default=512,
                   help="features messages per poll (source.features_batch_size)")
    p.add_argument(
        "--memory-events", type=int, nargs="+", default=[25_600, 102_400, 204_800, 409_600, 819_200]
    )
    p.add_argument("--sections", nargs="+",
                   default=["throughput", "real", "features", "memory", "diff"])
    p.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if args.memory_child:
        sys.stdout.write(json.dumps(memory_child(args)) + "\n")
        return
    real = load_real_codes(args.real_events) if {"real", "features"} & set(args.sections) else None
    sections = {"throughput": throughput, "memory": memory, "diff": diff_time,
                "descriptors": descriptor_cost,
                "real": lambda a: real_section(a, real),
                "features": lambda a: features_section(a, real)}
    result = {"d_sae": args.d_sae, "nnz": args.nnz}
    for name in args.sections:
        logging.getLogger().info("running %s", name)
        result[name] = sections[name](args)
    if "throughput" in args.sections:  # the same stream cut into other batch sizes
        result["throughput_by_batch"] = {args.batch: result["throughput"]["events_per_s"]} | {
            b: throughput(argparse.Namespace(**(vars(args) | {"batch": b})))["events_per_s"]
            for b in args.also_batches}
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
