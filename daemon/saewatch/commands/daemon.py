"""``saewatch run``, ``replay`` and ``demo``: the daemon, a file replay, and the live demo."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path

from saewatch.config import Settings

logger = logging.getLogger(__name__)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daemon: consume events, encode, keep state, diff, serve metrics and the report."""
    from saewatch.app import App

    settings = _with_web(args, settings)
    return App(settings, max_events=args.max_events).run()


def cmd_encode(args: argparse.Namespace, settings: Settings) -> int:
    """Scale-out encoder: consume LLM events, publish their SAE codes to the features topic."""
    from saewatch.roles import EncodeWorker

    return EncodeWorker(_with_web(args, settings), max_events=args.max_events).run()


def cmd_aggregate(args: argparse.Namespace, settings: Settings) -> int:
    """Scale-out aggregator: read the features topic; own state, diffs, snapshots and metrics."""
    from saewatch.app import App

    return App(_with_web(args, settings), role="aggregate", max_events=args.max_events).run()


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daemon over a JSONL file of events (no Kafka), then stop (or keep serving)."""
    from saewatch.app import App

    settings = _with_web(args, settings)
    source = settings.source.model_copy(update={"kind": "file", "path": args.file})
    settings = settings.model_copy(update={"source": source})
    app = App(settings, stop_when_exhausted=not args.serve, serve_http=args.serve)
    status = app.run()
    report = app.reports.latest
    if report is not None and args.report is not None:
        args.report.write_text(report.model_dump_json(indent=2))
        logger.info("drift report written to %s", args.report)
    return status


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Replay a real version pair (AlpacaEval) through Kafka and the daemon; print the verdict."""
    from saewatch.demo import DemoPlan, run_demo

    settings = _with_web(args, settings)
    run_dir = Path(args.run_dir) / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    plan = DemoPlan(args.baseline, args.candidate, args.events, seed=args.seed,
                    arrival=args.arrival)
    return run_demo(settings, plan, use_kafka=not args.no_kafka, run_dir=run_dir,
                    timeout_s=args.timeout, exit_after_verdict=args.exit_after_verdict)


def _with_web(args: argparse.Namespace, settings: Settings) -> Settings:
    if getattr(args, "listen_address", None) is None:
        return settings
    web = settings.web.model_copy(update={"listen_address": args.listen_address})
    return settings.model_copy(update={"web": web})


def _web_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web.listen-address", dest="listen_address", default=None,
                        help="HOST:PORT for /metrics, the API and the report page "
                             "(default: web.listen_address, 127.0.0.1:9108)")


def configure_run(parser: argparse.ArgumentParser) -> None:
    _web_flag(parser)
    parser.add_argument("--max-events", type=int, default=None,
                        help="stop after this many records (testing)")


def configure_replay(parser: argparse.ArgumentParser) -> None:
    _web_flag(parser)
    parser.add_argument("file", type=Path, help="JSONL file of LLM events")
    parser.add_argument("--report", type=Path, default=None,
                        help="write the final drift report (JSON) here")
    parser.add_argument("--serve", action="store_true",
                        help="keep serving metrics and the report page after the file ends")


def configure_demo(parser: argparse.ArgumentParser) -> None:
    _web_flag(parser)
    # claude-2.1 and its "be concise" variant: a real behaviour change that shows in the first
    # tokens (gpt4_1106_preview's verbose variant differs mostly after them).
    parser.add_argument("--baseline", default="claude-2.1",
                        help="AlpacaEval model answering as v1")
    parser.add_argument("--candidate", default="claude-2.1_concise",
                        help="AlpacaEval model answering as v2")
    parser.add_argument("--events", type=int, default=300,
                        help="events per version (at most 402: each answers half the prompts)")
    parser.add_argument("--seed", type=int, default=0, help="which prompts each version answers")
    parser.add_argument("--arrival", choices=["canary", "release"], default="canary",
                        help="canary: both versions' events interleaved (default); release: "
                             "every v1 event first, then v2's")
    parser.add_argument("--no-kafka", action="store_true",
                        help="replay through a JSONL file instead of the local Kafka broker")
    parser.add_argument("--run-dir", default="var/demo", help="where the demo keeps its files")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the first verdict")
    parser.add_argument("--exit-after-verdict", action="store_true",
                        help="stop once the verdict is printed instead of serving")


COMMANDS = [
    ("run", cmd_run, "run the daemon (all stages in one process)"),
    ("encode", cmd_encode, "scale-out: encode events and publish codes to the features topic"),
    ("aggregate", cmd_aggregate, "scale-out: fold the features topic into state, diff, serve"),
    ("replay", cmd_replay, "run the daemon over a JSONL file of events"),
    ("demo", cmd_demo, "replay a real version pair and show what changed"),
]
CONFIGURERS = {"run": configure_run, "encode": configure_run, "aggregate": configure_run, "replay": configure_replay, "demo": configure_demo}
