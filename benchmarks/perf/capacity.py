"""Capacity on the shipped SAE's real codes: the state update and the aggregator's decode path.

Two sections of :mod:`benchmarks.perf.aggregate`, both on one pinned core:

* ``real``: ``MonitorState.update`` events/s on real events (:mod:`benchmarks.perf.real_codes`)
  with their **raw** codes (before presence thresholds) and their **thresholded** codes (what
  the encoder publishes), side by side: the runs alternate between the two (order rotated),
  each on a fresh state after ``--warmup`` events. Every component's update is timed in the
  same pass (µs per event: a timer around each component's ``update``, one pair of clock
  reads per component per batch), so the parts add up to the total;
* ``features``: what ``saewatch aggregate`` does per poll besides Kafka's fetch, on the same
  real events as features-topic messages (:func:`saewatch.codec.encode_messages`): decode and
  check every message (:class:`saewatch.codec.FeaturesDecoder`, as the Kafka source calls it),
  assemble the poll's batch, fold it into the state; per stage µs per event.

Wall time is what counts (``events_per_s``); the CPU time of the process is reported beside it
(``events_per_cpu_s``) because on a shared machine the wall clock also counts other processes.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.perf.real_codes import RealCodes, load_real_codes, real_batches
from saewatch.codec import FeaturesDecoder, encode_messages
from saewatch.config import StateSettings
from saewatch.models import FeatureBatch, Record, SourcePosition
from saewatch.state.monitor import COMPONENTS, MonitorState

logger = logging.getLogger(__name__)

KINDS = ("raw", "thresholded")


def _timed(fn: Callable[..., Any], totals: dict[str, float], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            totals[name] += time.perf_counter() - start
    return wrapper


def timed_run(warm: list[FeatureBatch], timed: list[FeatureBatch]) -> dict[str, Any]:
    """One fresh state: warm up, then time ``timed`` (wall, CPU and per component)."""
    state = MonitorState(StateSettings())
    for b in warm:
        state.update(b)
    totals = dict.fromkeys(COMPONENTS, 0.0)
    for name, part in state._parts.items():  # noqa: SLF001  (a benchmark's instrumentation)
        method = "fresh" if name == "seen" else "update"
        setattr(part, method, _timed(getattr(part, method), totals, name))
    n = sum(len(b) for b in timed)
    wall, cpu = time.perf_counter(), time.process_time()
    for b in timed:
        state.update(b)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"events_per_s": n / wall, "events_per_cpu_s": n / cpu,
            "us_per_event": {k: 1e6 * v / n for k, v in totals.items()}}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    parts = {k: round(statistics.median(r["us_per_event"][k] for r in runs), 2)
             for k in COMPONENTS}
    return {
        "events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
        "runs": [round(r["events_per_s"]) for r in runs],
        "events_per_cpu_s": round(statistics.median(r["events_per_cpu_s"] for r in runs)),
        "us_per_event": parts,
        "us_per_event_total": round(sum(parts.values()), 2),
    }


def real_section(args: argparse.Namespace, real: RealCodes | None = None) -> dict[str, Any]:
    real = real or load_real_codes(args.real_events)
    n_warm, n_timed = args.warmup // args.batch, args.events // args.batch
    batches = {k: real_batches(real, k == "thresholded", n_warm + n_timed, args.batch)
               for k in KINDS}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for r in range(args.runs):
        for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
            runs[kind].append(timed_run(batches[kind][:n_warm], batches[kind][n_warm:]))
            logger.info("real %s run %d: %.0f events/s", kind, r, runs[kind][-1]["events_per_s"])
    out: dict[str, Any] = {
        "events": len(real.events), "batch": args.batch, "warmup_events": n_warm * args.batch,
        "timed_events": n_timed * args.batch, "encoder_id": real.encoder_id}
    for kind in KINDS:
        out[kind] = _median_run(runs[kind]) | {
            "present": {f: real.present(f, kind == "thresholded") for f in ("prompt", "response")}}
    return out


def decode_poll(decoder: FeaturesDecoder, values: list[bytes], offset: int,
                max_bytes: int) -> list[Record]:
    """The Kafka source's per-message work for one poll: a position and the decoder hook."""
    records = []
    for i, value in enumerate(values):
        where = SourcePosition(topic="llm-features", partition=0, offset=offset + i)
        result = decoder(value, where, 8_000, max_bytes)
        if not isinstance(result, Record):
            raise RuntimeError(f"a real message was rejected: {result.error}")
        records.append(result)
    return records


def features_section(args: argparse.Namespace, real: RealCodes | None = None) -> dict[str, Any]:
    """Decode, assemble and fold polls of ``--poll`` features messages (thresholded codes)."""
    real = real or load_real_codes(args.real_events)
    poll = args.poll
    n_warm, n_timed = args.warmup // poll, args.events // poll
    messages = [[v for _, v in encode_messages(b)]
                for b in real_batches(real, True, n_warm + n_timed, poll)]
    results = []
    for r in range(args.runs):
        decoder, state = FeaturesDecoder(), MonitorState(StateSettings())
        stages = {"decode": 0.0, "assemble": 0.0, "update": 0.0}
        wall, cpu = 0.0, 0.0
        for j, values in enumerate(messages):
            t0, c0 = time.perf_counter(), time.process_time()
            records = decode_poll(decoder, values, j * poll, 1 << 20)
            t1 = time.perf_counter()
            batch = FeatureBatch.concat([r.codes for r in records if r.codes is not None])
            t2 = time.perf_counter()
            state.update(batch)
            t3, c3 = time.perf_counter(), time.process_time()
            if j >= n_warm:
                for name, s in zip(stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    stages[name] += s
                wall, cpu = wall + t3 - t0, cpu + c3 - c0
        n = n_timed * poll
        results.append({"events_per_s": n / wall, "events_per_cpu_s": n / cpu,
                        "us_per_event": {k: 1e6 * v / n for k, v in stages.items()}})
        logger.info("features run %d: %.0f events/s", r, results[-1]["events_per_s"])
    sizes = [len(v) for m in messages for v in m]
    return {
        "poll": poll, "timed_events": n_timed * poll, "mean_message_bytes": round(np.mean(sizes)),
        "events_per_s": round(statistics.median(x["events_per_s"] for x in results)),
        "runs": [round(x["events_per_s"]) for x in results],
        "events_per_cpu_s": round(statistics.median(x["events_per_cpu_s"] for x in results)),
        "us_per_event": {k: round(statistics.median(x["us_per_event"][k] for x in results), 2)
                         for k in ("decode", "assemble", "update")},
    }
