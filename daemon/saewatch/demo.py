"""``saewatch demo``: a real version pair replayed through the whole pipeline.

The baseline version answers one half of the AlpacaEval prompts, the candidate the other half
(two versions never see identical traffic in production). By default the two arrive interleaved,
as a canary deployment would see them (``--arrival release``: every baseline event first, then
the candidate's, as after a release). Events go through the local Kafka broker (or, with
``--no-kafka``, through a JSONL file), the daemon encodes and diffs them, and the demo prints the
report page and ``/metrics`` URLs, a status line with both sides' counts every few seconds, and
the first verdict with its top features. The data is the demo sample shipped with saewatch.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saewatch.app import App
from saewatch.config import ComparisonSpec, Settings
from saewatch.datasets import alpaca_events
from saewatch.models import ComparisonResult, DriftReport, LLMEvent

logger = logging.getLogger(__name__)

DEMO_MODEL_ID = "assistant"
# Poll the report this often while waiting for the first verdict.
WATCH_INTERVAL_S = 5.0


# Events per poll in the demo: the report (and the status line) refreshes between two polls, so
# small polls keep the printout moving on a CPU that encodes a few events a second.
DEMO_BATCH_SIZE = 16
BAR_WIDTH = 20
Arrival = Literal["canary", "release"]


@dataclass(frozen=True)
class DemoPlan:
    baseline: str
    candidate: str
    events_per_version: int
    seed: int = 0
    arrival: Arrival = "canary"

    def describe(self) -> str:
        return ("interleaved, as a canary deployment sees them" if self.arrival == "canary"
                else "every v1 event first, then v2's, as after a release")


def demo_events(plan: DemoPlan) -> list[LLMEvent]:
    """Baseline events on one random half of the prompts, candidate events on the other,
    interleaved one by one (``canary``) or one version after the other (``release``)."""
    indices = list(range(805))
    random.Random(plan.seed).shuffle(indices)
    half = len(indices) // 2
    n = min(plan.events_per_version, half)
    baseline = alpaca_events(plan.baseline, version="v1", model_id=DEMO_MODEL_ID,
                             indices=indices[:half][:n])
    if plan.arrival == "release":
        candidate = alpaca_events(plan.candidate, version="v2", model_id=DEMO_MODEL_ID,
                                  indices=indices[half:][:n], start=baseline[-1].timestamp)
        return baseline + candidate
    # One clock for both: event k of each version arrives at second k.
    candidate = alpaca_events(plan.candidate, version="v2", model_id=DEMO_MODEL_ID,
                              indices=indices[half:][:n])
    return [e for pair in zip(baseline, candidate, strict=True) for e in pair]


def demo_settings(base: Settings, run_dir: Path, topic: str | None) -> Settings:
    """The user's settings with the demo's topic, snapshot directory and comparison."""
    source = base.source.model_copy(
        update={"batch_size": min(base.source.batch_size, DEMO_BATCH_SIZE)})
    updates: dict[str, object] = {
        "state": base.state.model_copy(update={"snapshot_dir": run_dir / "snapshots"}),
        "source": source,
        "diff": base.diff.model_copy(
            update={"comparisons": [ComparisonSpec(model_id=DEMO_MODEL_ID, baseline="v1",
                                                   candidate="v2")],
                    "interval_s": min(base.diff.interval_s, WATCH_INTERVAL_S)}
        ),
    }
    if topic is None:
        updates["source"] = source.model_copy(
            update={"kind": "file", "path": run_dir / "events.jsonl"}
        )
    else:
        updates["kafka"] = base.kafka.model_copy(
            update={"topic": topic, "group_id": f"{topic}-daemon"}
        )
    return base.model_copy(update=updates)


def publish_demo(settings: Settings, events: list[LLMEvent], use_kafka: bool) -> None:
    if not use_kafka:
        path = settings.source.path
        assert path is not None
        path.write_text("".join(e.model_dump_json() + "\n" for e in events))
        logger.info("wrote %d events to %s", len(events), path)
        return
    from saewatch.source.admin import ensure_topics
    from saewatch.source.producer import connect_producer, publish

    # Created up front: auto-creation on first use logs "topic not found" errors.
    kafka = settings.kafka
    ensure_topics(kafka, {kafka.topic: 1, kafka.dlq_topic_name: 1})
    producer = connect_producer(settings.kafka, timeout_s=60)
    try:
        publish(events, producer, settings.kafka.topic, key_by="event_id", total=len(events))
    finally:
        producer.close()


def watch(app: App, runner: threading.Thread, deadline_s: float, total: int,
          started: float) -> ComparisonResult | None:
    """Print a status line every few seconds and wait for the configured comparison's verdict:
    ``drift``, or whatever it is once all ``total`` events were handled; ``None`` when the
    deadline passes first."""
    loaded = False
    while runner.is_alive() and time.monotonic() - started < deadline_s:
        time.sleep(WATCH_INTERVAL_S)
        elapsed = time.monotonic() - started
        if not app.readiness.model_loaded:
            _say(f"[{elapsed:5.0f}s] loading the model and SAE "
                 "(a first run converts the GGUF weights once, ~20 s)")
            continue
        if not loaded:
            loaded = True
            _say(f"[{elapsed:5.0f}s] model and SAE ready; encoding")
        report = app.reports.latest  # read once: the line's counts and verdict agree
        result = _versions_result(report)
        _say(status_line(elapsed, app.handled, total, report, result,
                         app.settings.diff.min_documents))
        if result is not None:
            done = app.handled >= total and result.verdict != "insufficient_data"
            if result.verdict == "drift" or done:
                return result
    return None


def _versions_result(report: DriftReport | None) -> ComparisonResult | None:
    for result in report.comparisons if report is not None else ():
        if result.key.kind == "versions" and result.key.candidate == "v2":
            return result
    return None


def status_line(elapsed: float, handled: int, total: int, report: DriftReport | None,
                result: ComparisonResult | None, min_documents: int) -> str:
    """One status line: a progress bar of events handled, both sides' counts, the verdict.

    >>> print(status_line(42, 60, 600, None, None, 100))
    [   42s] [##..................]  60/600 events  v1 0 / v2 0 responses  waiting for both sides
    """
    filled = round(BAR_WIDTH * handled / max(total, 1))
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    counts = {v.model_version: v.documents for v in (report.versions if report else ())
              if v.model_id == DEMO_MODEL_ID and v.field == "response"}
    v1, v2 = counts.get("v1", 0), counts.get("v2", 0)
    if result is None:
        verdict = "waiting for both sides"
    elif result.verdict == "insufficient_data":
        verdict = f"insufficient_data (a verdict needs {min_documents} per side)"
    else:
        verdict = result.verdict
        if result.headline:  # the finding a person reads first: a moved text descriptor
            verdict += f": {result.headline}"
    return (f"[{elapsed:5.0f}s] [{bar}] {handled:3d}/{total} events  "
            f"v1 {v1} / v2 {v2} responses  {verdict}")


def describe(result: ComparisonResult) -> str:
    """The moved text descriptors, the themes, then the top features each way, as the demo
    prints them."""
    lines = [f"drift score {result.drift_score:.2f}, {result.n_significant} significant features"]
    moved = result.moved_descriptors
    if moved:  # descriptors first: "responses 58% shorter" is what a reader looks for
        lines.append("  text descriptors that moved:")
        lines += [f"    {d.text}" for d in moved[:5]]
    if result.themes:  # then one line per group of co-firing features, not a dozen ids
        lines.append(f"  themes ({result.n_significant_themes} among the significant features):")
        for direction in ("up", "down"):
            for t in [t for t in result.themes if t.direction == direction][:3]:
                more = f" +{t.size - 1}" if t.size > 1 else ""
                lines.append(f"    {direction:<4} {t.share_baseline:6.1%} -> {t.share_candidate:6.1%}"
                             f"  #{t.leader}{more:<4} {' · '.join(t.labels)}")
    for title, deltas in (("more frequent in v2", result.top_up),
                          ("less frequent in v2", result.top_down)):
        lines.append(f"  {title}:" if deltas else f"  {title}: none")
        for d in deltas[:5]:
            # "(length)": shorter (or longer) answers account for it; such changes come last.
            mark = " (length)" if d.length_explained else ""
            lines.append(f"    #{d.feature:<5} {d.freq_baseline:6.1%} -> {d.freq_candidate:6.1%}"
                         f"  q={d.q_value:.1e}  {d.label or ''}{mark}")
    return "\n".join(lines)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_demo(
    base: Settings,
    plan: DemoPlan,
    *,
    use_kafka: bool,
    run_dir: Path,
    timeout_s: float,
    exit_after_verdict: bool,
) -> int:
    """Publish the pair, run the daemon, report the first verdict; serve until Ctrl+C."""
    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    topic = f"saewatch-demo-{run_dir.name}" if use_kafka else None
    settings = demo_settings(base, run_dir, topic)
    events = demo_events(plan)
    via = f"Kafka topic {topic}" if use_kafka else "a JSONL file"
    _say(f"saewatch demo: {plan.baseline} (v1) vs {plan.candidate} (v2), {len(events)} real "
         f"AlpacaEval responses via {via}, {plan.describe()}")
    publish_demo(settings, events, use_kafka)
    app = App(settings, stop_when_exhausted=False)
    runner = threading.Thread(target=app.run, name="saewatch-daemon", daemon=True)
    runner.start()
    url = f"http://{settings.web.listen_address}"
    _say(f"report page: {url}/   metrics: {url}/metrics")
    try:
        result = watch(app, runner, timeout_s, len(events), started)
        if result is None:
            _say("no drift verdict yet; see the report page")
            return 1 if exit_after_verdict else _serve(app, runner, url)
        _say(f"first verdict after {time.monotonic() - started:.0f} s: {result.verdict}, at "
             f"{result.n_baseline} v1 / {result.n_candidate} v2 responses")
        _say(describe(result))
        _say(f"\nreport page: {url}/\nmetrics:     {url}/metrics")
        return 0 if exit_after_verdict else _serve(app, runner, url)
    except KeyboardInterrupt:
        _say("stopping (forced checkpoint)...")
        return 0
    finally:
        app.stop()
        runner.join(timeout=120)


def _serve(app: App, runner: threading.Thread, url: str) -> int:
    _say(f"serving {url} until Ctrl+C")
    try:
        while runner.is_alive():
            runner.join(timeout=1.0)
    except KeyboardInterrupt:
        _say("stopping (forced checkpoint)...")
    return 0
