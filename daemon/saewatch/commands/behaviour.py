"""``saewatch behaviour add|list|show|remove``: watched behaviours in the stored state.

The commands work on the newest snapshot of ``state.snapshot_dir`` and write the next one with
the same offsets, so the daemon resumes with the behaviour defined (run them while the daemon
is stopped: a running daemon's next checkpoint would not hold the change; configure
``behaviours:`` instead, which the daemon fits at start). ``add`` encodes the examples with the
configured encoder; every check runs first, and a failure writes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from saewatch.config import Settings
from saewatch.errors import SaewatchError

if TYPE_CHECKING:
    from saewatch.state.monitor import MonitorState
    from saewatch.state.snapshot import SnapshotStore

logger = logging.getLogger(__name__)

EXIT_INPUT = 1
EXIT_USAGE = 2  # as argparse: the command line is to fix
LOW_RECALL = 0.8  # examples the fitted scorer misses above this share: say so


def cmd_behaviour(args: argparse.Namespace, settings: Settings) -> int:
    """Define a behaviour by example texts (add), or list, show or remove the stored ones."""
    problem = _check(args)
    if problem is not None:
        sys.stderr.write(f"saewatch: {problem}\n")
        return EXIT_USAGE
    try:
        return int(_ACTIONS[args.action](args, settings))
    except SaewatchError as exc:  # one line saying what to do; nothing was written
        sys.stderr.write(f"saewatch: behaviour {args.action}: {exc}\n")
        return EXIT_INPUT


def _load(settings: Settings) -> tuple[MonitorState, SnapshotStore, dict[tuple[str, int], int]]:
    from saewatch.state.monitor import MonitorState
    from saewatch.state.snapshot import SnapshotStore

    store = SnapshotStore(settings.state.snapshot_dir, keep=settings.state.snapshots_kept)
    state = MonitorState(settings.state)
    latest = store.load_latest()
    offsets: dict[tuple[str, int], int] = {}
    if latest is not None:
        state.restore(latest.state)
        offsets = dict(latest.offsets)
    return state, store, offsets


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from saewatch.behaviours import define, read_examples
    from saewatch.encode.default import cache_dir
    from saewatch.encode.encoder import SAEEncoder

    examples = read_examples(args.examples)  # bad files fail before any model loads
    counters = read_examples(args.counter, "counter-examples") if args.counter else []
    state, store, offsets = _load(settings)
    if any(d.name == args.name for d in state.behaviours()):
        sys.stderr.write(f"saewatch: behaviour add: {args.name!r} exists already: remove it "
                         "first or choose another name\n")
        return EXIT_INPUT
    encoder = SAEEncoder.from_settings(settings.encode)
    try:
        d = define(state, encoder, args.name, examples, counters, args.field,
                   cache_dir() / "behaviours")
    finally:
        encoder.close()
    path = store.save(state.snapshot(), offsets)
    retro = [c for c in state.view().behaviour_counts
             if c.behaviour == d.name and c.window == "all"]
    sys.stdout.write(
        f"behaviour {d.name}: {len(d.features)} features {list(d.features)[:8]}, threshold "
        f"{d.threshold:.3f}; flags {d.example_recall:.0%} of the examples and "
        f"{d.background_rate:.2%} of the background ({d.background_source})\n")
    if d.example_recall < LOW_RECALL:
        sys.stderr.write(f"saewatch: warning: behaviour {d.name} flags only "
                         f"{d.example_recall:.0%} of its own examples: they may show several "
                         "variants of it; give examples of each variant (or more of them)\n")
    for c in retro:
        sys.stdout.write(f"retro-active over the retrieval ring: {c.flagged} of {c.documents} "
                         f"events of {c.model_id}/{c.model_version}\n")
    sys.stdout.write(f"stored in {path}\n")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    state, _, _ = _load(settings)
    for d in state.behaviours():
        sys.stdout.write(f"{d.name}\t{d.field}\t{len(d.examples)} examples\t"
                         f"{len(d.features)} features\n")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    state, _, _ = _load(settings)
    view = state.view()
    found = [d for d in view.behaviours if d.name == args.name]
    if not found:
        sys.stderr.write(f"saewatch: behaviour show: no behaviour {args.name!r}; see saewatch "
                         "behaviour list\n")
        return EXIT_INPUT
    out = found[0].model_dump(mode="json")
    out["counts"] = [c.model_dump(mode="json") for c in view.behaviour_counts
                     if c.behaviour == args.name]
    out["latest"] = [m.model_dump(mode="json") for m in view.behaviour_matches
                     if m.behaviour == args.name]
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    state, store, offsets = _load(settings)
    state.remove_behaviour(args.name)
    path = store.save(state.snapshot(), offsets)
    sys.stdout.write(f"behaviour {args.name} removed; stored in {path}\n")
    return 0


_ACTIONS = {"add": _add, "list": _list, "show": _show, "remove": _remove}


def configure_behaviour(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=sorted(_ACTIONS), help="what to do")
    parser.add_argument("name", nargs="?", default=None,
                        help="the behaviour (add, show, remove): lower-case letters, digits, _")
    parser.add_argument("--examples", type=Path, default=None, metavar="FILE",
                        help="texts that show the behaviour: one per line, or JSON lines "
                        "(.jsonl), or texts between --- lines")
    parser.add_argument("--counter", type=Path, default=None, metavar="FILE",
                        help="texts that do not show it (same format; optional)")
    parser.add_argument("--field", choices=["response", "prompt"], default="response",
                        help="the turn to watch (default: %(default)s)")


def _check(args: argparse.Namespace) -> str | None:
    if args.action != "list" and not args.name:
        return f"behaviour {args.action} needs a NAME"
    if args.action == "add" and args.examples is None:
        return "behaviour add needs --examples FILE"
    return None


COMMANDS = [
    ("behaviour", cmd_behaviour, "watch a behaviour defined by example texts (add/list/show/"
     "remove)"),
]
CONFIGURERS = {"behaviour": configure_behaviour}
