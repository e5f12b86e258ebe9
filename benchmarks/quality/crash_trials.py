"""kill -9 trials beyond the test suite's five: exact counts after every stream of crashes.

Per stream: a fresh 3-partition topic of a real broker gets ``--events`` valid AlpacaEval events
(two versions) plus four poison messages, shuffled and published live at ``--rate`` messages/s:
the tiny model would otherwise drain the topic between two kills, and a restart takes ~10 s
(start-up, and the group waits out the killed member's 6 s session), so the stream must last
longer than all restarts together. ``saewatch run`` (tiny
random model, so the trial measures the checkpoint protocol rather than encoding) is started,
killed with SIGKILL ``--kills`` times at random points (after the snapshot reached a random
offset, plus a random delay of up to 0.6 s, so kills land mid-batch, mid-encode and
mid-checkpoint), and restarted; the stream's last tenth is published only after the last kill,
so every kill lands mid-stream however slowly the machine runs.
After the last restart drains the topic and stops on SIGTERM, the last snapshot must hold each
valid event exactly once per version and field, reflect the topic's end offsets, and the poison
messages must be in the dead-letter topic. The same procedure as ``tests/app/test_crash_recovery``.

    python -m benchmarks.quality.crash_trials --streams 4 --kills 5 --json /tmp/crash.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.perf.streams import build_tiny_model, exit_on_sigterm, kafka_broker
from saewatch.config import StateSettings
from saewatch.state.monitor import MonitorState
from tests.support.app import (
    handled,
    kill_at,
    kill_leftovers,
    pair_events,
    serving,
    snapshots_of,
    start,
    wait_for,
    write_config,
)
from tests.support.kafka import KafkaCluster

logger = logging.getLogger("benchmarks.quality.crash_trials")

POISON = [b"{broken", b'{"event_id": 1}', b"\xc3\x28 not utf-8", b"[]"]


def publish_live(cluster: KafkaCluster, topic: str, messages: list, rate: float) -> threading.Thread:
    """Publish ``messages`` in the background, a chunk every 0.5 s, at ``rate`` messages/s."""
    chunk = max(1, round(rate / 2))

    def run() -> None:
        for i in range(0, len(messages), chunk):
            cluster.produce_raw(topic, messages[i:i + chunk])
            time.sleep(0.5)

    thread = threading.Thread(target=run, name="publisher", daemon=True)
    thread.start()
    return thread


def one_stream(cluster: KafkaCluster, dirs: tuple[Path, Path], root: Path, seed: int,
               events_per_version: int, kills: int, rate: float) -> dict[str, object]:
    """Kill the daemon ``kills`` times on one stream; the outcome and where the kills landed."""
    rng = random.Random(seed)
    topic = cluster.create_topic(3, prefix=f"crash{seed}")
    messages = [(e.event_id.encode(), e.model_dump_json().encode())
                for e in pair_events(events_per_version)]
    messages += [(None, bad) for bad in POISON]
    rng.shuffle(messages)
    total = len(messages)
    # The last tenth waits until every kill has happened, so each kill lands before the end of
    # the stream however slowly the daemon starts (kill targets all lie in the first nine tenths).
    head = total - total // 10
    publisher = publish_live(cluster, topic, messages[:head], rate)
    config = write_config(root / f"run{seed}.yaml", cluster.bootstrap, topic, dirs)
    store, log = snapshots_of(config), root / f"daemon{seed}.log"
    started = time.monotonic()
    targets = sorted(rng.sample(range(1, head), kills))
    progress = kill_at(targets, config, topic, log, rng)
    publisher.join()
    cluster.produce_raw(topic, messages[head:])
    proc = start("run", config, log)
    wait_for(lambda: handled(store, topic) >= total and serving(config), [proc], log)
    proc.send_signal(signal.SIGTERM)
    clean_exit = proc.wait(timeout=60) == 0
    latest = store.load_latest()
    state = MonitorState(StateSettings())
    if latest is not None:
        state.restore(latest.state)
    documents = {f"{v.model_version}/{v.field}": v.documents for v in state.version_counts()}
    dead = {r.value for r in cluster.read_topic(f"{topic}.dlq")}
    exact = set(documents.values()) == {events_per_version} and len(documents) == 4
    mid_stream = sum(0 < p < total for p in progress)  # all of them, by the held-back tail
    offsets_at_end = latest is not None and latest.offsets == {
        (topic, p): end for p, end in cluster.end_offsets(topic).items()}
    return {
        "seed": seed, "messages": total, "kills": kills, "snapshot_offsets_at_kills": progress,
        "kills_mid_stream": mid_stream, "documents": documents, "exact": exact, "offsets_at_end": offsets_at_end,
        "poison_in_dlq": dead >= set(POISON), "clean_exit": clean_exit,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--kills", type=int, default=5, help="kill -9 per stream")
    p.add_argument("--events", type=int, default=100, help="valid events per version and stream")
    p.add_argument("--rate", type=float, default=2.0, help="messages published per second")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    exit_on_sigterm()
    streams = []
    with tempfile.TemporaryDirectory(prefix="saewatch-crash-") as tmp, kafka_broker() as bootstrap:
        root = Path(tmp)
        dirs = build_tiny_model(root / "tiny")
        cluster = KafkaCluster(bootstrap)
        try:
            for seed in range(args.streams):
                streams.append(one_stream(cluster, dirs, root, seed, args.events, args.kills,
                                          args.rate))
                logger.info("stream %d: %s", seed, streams[-1])
        finally:
            kill_leftovers()
            cluster.close()
    ok = all(s["exact"] and s["offsets_at_end"] and s["poison_in_dlq"] and s["clean_exit"]
             for s in streams)
    result = {"streams": streams, "kills_total": args.streams * args.kills,
              "kills_mid_stream": sum(s["kills_mid_stream"] for s in streams), "all_exact": ok}
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
