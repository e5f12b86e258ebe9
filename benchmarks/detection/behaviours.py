"""Watched behaviours on planted properties: share, per-event flags, version alarm, A/A, cost.

    python -m benchmarks.detection.behaviours            # full run (make bench-detect)
    python -m benchmarks.detection.behaviours --quick    # tiny encoder, sample data: smoke test

Each planted property of :mod:`benchmarks.detection.properties` becomes a behaviour defined by 5
example texts that are *not* in any stream: the property applied to 5 responses of another
model (claude-2.1, demo sample), fitted against the background a fresh daemon uses (demo-sample
claude-2.1 responses; :func:`saewatch.behaviours.define` on an empty state). Streams: the base
model (gpt4_1106_preview) on both sides, disjoint prompts, :data:`SIDE` events per side; the
first 200 per side are the detection benchmark's planted streams (same split, same planted rows,
cached codes) and 100 more per side come from prompts outside its selection. A share ``p`` of
the candidate's responses get the property (2%, 5%, 20%, nested). Measured per stream: the
candidate's estimated share against the planted one, precision and recall of the per-event flag,
the baseline's false-flag rate, and the first look (every 10 events per side) at which the
behaviour's always-valid version test alarms; A/A: the base model's unplanted halves and other
models' halves, every behaviour, every look. One stream per property goes through the real
``MonitorState`` (counts, view, report) to check it gives the same numbers as the shortcut.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection.cache import CodeStore, encoder_key
from benchmarks.detection.encoders import EncoderKind, build_encoder, encode_settings
from benchmarks.detection.properties import PROPERTIES
from benchmarks.detection.scenarios import responses, selected_prompts
from benchmarks.quality.alpaca_codes import halves
from saewatch.config import DiffSettings
from saewatch.diff.behaviours import behaviour_summaries
from saewatch.encode.default import cache_dir
from saewatch.models import SparseCodes, VersionCount
from saewatch.models.behaviours import BehaviourCount, BehaviourDefinition
from saewatch.state.behaviour_fit import NoSpecificFeatureError, fit_behaviour
from saewatch.state.descriptors import extract_descriptors
from saewatch.views import StateView

logger = logging.getLogger("benchmarks.detection.behaviours")
ROOT = Path(__file__).resolve().parents[2]
PREVALENCES = (0.02, 0.05, 0.20)
EVERY = 10  # events per side between looks, as the detection benchmark
T = datetime(2026, 11, 20, tzinfo=UTC)


@dataclass(frozen=True)
class Sizes:
    base: str
    cached_prompts: int  # the detection benchmark's planted selection (half per side)
    extra_prompts: int  # more prompts, half per side
    seeds: tuple[int, ...]
    properties: tuple[str, ...]
    example_model: str
    background: int  # example-model responses used as background (not the examples)
    aa_models: tuple[str, ...]


FULL = Sizes("gpt4_1106_preview", 400, 200, (1, 2, 3), tuple(PROPERTIES), "claude-2.1", 300,
             ("claude-2.1", "Mistral-7B-Instruct-v0.2", "Snorkel-Mistral-PairRM-DPO"))
QUICK = Sizes("claude-2.1", 100, 0, (1,), ("greeting",), "claude-2.1_concise", 100,
              ("claude-2.1_concise",))


@dataclass(frozen=True)
class Stream:
    prop: str
    prevalence: float
    seed: int
    baseline: tuple[str, ...]
    candidate: tuple[str, ...]
    planted: np.ndarray  # bool per candidate event


def _order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def streams(sizes: Sizes) -> list[Stream]:
    """Planted streams: the detection benchmark's (first part) plus an extension per side."""
    texts = responses(sizes.base)
    chosen = selected_prompts(sizes.cached_prompts)
    extra = selected_prompts(sizes.cached_prompts + sizes.extra_prompts)[sizes.cached_prompts:]
    ex_a, ex_b = halves(len(extra), 99)
    out = []
    for seed in sizes.seeds:
        first, second = halves(len(chosen), seed)
        a, b = chosen[first], chosen[second]
        base = [texts[int(a[i])] for i in _order(len(a), seed)] + [texts[int(i)]
                                                                    for i in extra[ex_a]]
        cand = [texts[int(b[i])] for i in _order(len(b), seed + 1000)]
        cand_extra = [texts[int(i)] for i in extra[ex_b]]
        rank, rank_extra = _order(len(cand), seed + 2000), _order(len(cand_extra), 3000)
        for name in sizes.properties:
            prop = PROPERTIES[name]
            for p in PREVALENCES:
                rows = set(rank[:max(1, round(p * len(cand)))].tolist())
                rows_x = set(rank_extra[:round(p * len(cand_extra))].tolist())
                docs = [prop.apply(t) if i in rows else t for i, t in enumerate(cand)] + [
                    prop.apply(t) if i in rows_x else t for i, t in enumerate(cand_extra)]
                planted = np.array([i in rows for i in range(len(cand))]
                                   + [i in rows_x for i in range(len(cand_extra))])
                out.append(Stream(name, p, seed, tuple(base), tuple(docs), planted))
    return out


def definitions_texts(sizes: Sizes) -> tuple[dict[str, list[str]], list[str]]:
    """Per property its 5 examples, and the background: responses of the example model."""
    texts = responses(sizes.example_model)
    background = [texts[int(i)] for i in selected_prompts(sizes.background)]
    outside = [int(i) for i in np.random.default_rng(7).permutation(len(texts))
               if int(i) not in set(selected_prompts(sizes.background).tolist())]
    examples = {n: [PROPERTIES[n].apply(texts[i]) for i in outside[:5]] for n in sizes.properties}
    return examples, background


def view_of(d: BehaviourDefinition, n_a: int, k_a: int, n_b: int, k_b: int) -> StateView:
    """What the state's view holds of one behaviour after ``n`` events per side."""
    return StateView(
        taken_at=T,
        versions=[VersionCount(model_id="m", model_version=v, field="response", documents=n)
                  for v, n in (("baseline", n_a), ("candidate", n_b))],
        behaviours=[d],
        behaviour_counts=[BehaviourCount(behaviour=d.name, model_id="m", model_version=v,
                                         field="response", documents=n, flagged=k)
                          for v, n, k in (("baseline", n_a, k_a), ("candidate", n_b, k_b))])


def first_alarm(d: BehaviourDefinition, flags_a: np.ndarray, flags_b: np.ndarray,
                settings: DiffSettings) -> int | None:
    """Events per side at the first look whose behaviour test alarms."""
    n = min(len(flags_a), len(flags_b))
    for point in range(EVERY, n + 1, EVERY):
        view = view_of(d, point, int(flags_a[:point].sum()), point, int(flags_b[:point].sum()))
        if behaviour_summaries(view, settings)[0].comparisons[0].alarm:
            return point
    return None


def through_state(d: BehaviourDefinition, store: CodeStore, s: Stream,
                  settings: DiffSettings) -> dict[str, Any]:
    """The same stream through MonitorState → view → report: counts and first alarm."""
    from benchmarks.detection.simulate import state_settings
    from benchmarks.quality.alpaca_codes import as_batch
    from saewatch.diff.report import build_report
    from saewatch.state.monitor import MonitorState

    state = MonitorState(state_settings())
    n = min(len(s.baseline), len(s.candidate))
    first = None
    for lo in range(0, n, EVERY):
        for version, docs in (("baseline", s.baseline), ("candidate", s.candidate)):
            part = list(docs[lo:lo + EVERY])
            ids = list(range(lo, lo + len(part)))
            state.update(as_batch(store.codes(part), f"{version}{s.seed}", version, ids,
                                  store.encoder_id, store.d_sae, texts=part, model_id="m"))
        if lo == 0:
            state.define_behaviour(d)  # retro-active over the first look's events
        summary = build_report(state.view(), settings).behaviours[0]
        if first is None and summary.comparisons and summary.comparisons[0].alarm:
            first = lo + EVERY
    shares = {x.model_version: x for x in summary.shares if x.window == "all"}
    return {"flagged_candidate": shares["candidate"].flagged,
            "flagged_baseline": shares["baseline"].flagged, "first_alarm": first}


def described(texts: Sequence[str], codes: SparseCodes) -> np.ndarray:
    """Descriptor values of ``texts`` as the state extracts them (token counts of ``codes``)."""
    return extract_descriptors(list(texts), codes.n_tokens)


def flags(d: BehaviourDefinition, store: CodeStore, texts: list[str]) -> np.ndarray:
    """Whether each of ``texts`` shows ``d`` (codes and descriptors, as the state scores)."""
    codes = store.codes(texts)
    return d.flags(codes, described(texts, codes))


def evaluate(sizes: Sizes, store: CodeStore) -> dict[str, Any]:
    settings = DiffSettings(auto_latest=True, window_comparisons=False, min_documents=10)
    examples, background = definitions_texts(sizes)
    bg_codes = store.codes(background)
    defs: dict[str, BehaviourDefinition] = {}
    refused: dict[str, str] = {}
    for name in sizes.properties:
        try:
            ex_codes = store.codes(examples[name])
            defs[name] = fit_behaviour(
                name, examples[name], ex_codes, bg_codes, store.d_sae,
                store.encoder_id, background_source=f"{len(background)} {sizes.example_model}",
                example_descriptors=described(examples[name], ex_codes),
                background_descriptors=described(background, bg_codes))
        except NoSpecificFeatureError as exc:  # measured too: the property is not watchable
            refused[name] = str(exc)
    rows: list[dict[str, Any]] = []
    checked: set[str] = set()
    for s in streams(sizes):
        if s.prop not in defs:
            continue
        d = defs[s.prop]
        fa, fb = flags(d, store, list(s.baseline)), flags(d, store, list(s.candidate))
        tp = int((fb & s.planted).sum())
        row = {
            "property": s.prop, "prevalence": s.prevalence, "seed": s.seed,
            "events_per_side": len(s.candidate), "planted": int(s.planted.sum()),
            "planted_share": float(s.planted.mean()), "estimated_share": float(fb.mean()),
            "precision": tp / int(fb.sum()) if fb.sum() else None,
            "recall": tp / int(s.planted.sum()), "baseline_flag_rate": float(fa.mean()),
            "first_alarm": first_alarm(d, fa, fb, settings),
        }
        if s.prop not in checked and s.prevalence == 0.05:
            checked.add(s.prop)
            row["through_state"] = via = through_state(d, store, s, settings)
            row["state_matches"] = (via["flagged_candidate"] == int(fb.sum())
                                    and via["flagged_baseline"] == int(fa.sum())
                                    and via["first_alarm"] == row["first_alarm"])
        rows.append(row)
    return {"definitions": {n: d.model_dump(mode="json", exclude={"examples", "created_at"})
                            for n, d in defs.items()}, "refused": refused,
            "examples": examples, "streams": rows, "aa": aa_runs(sizes, store, defs, settings),
            "cost": cost(store, defs, [t for s in streams(sizes)[:1] for t in s.candidate])}


def aa_runs(sizes: Sizes, store: CodeStore, defs: dict[str, BehaviourDefinition],
            settings: DiffSettings) -> list[dict[str, Any]]:
    """Unplanted halves: the base model's two sides, and other models split at random."""
    out = []
    plain = {s.seed: s for s in streams(sizes) if s.prop == sizes.properties[0]}
    sides = [(f"{sizes.base} s{k}", list(s.baseline), [t for t, p in zip(s.candidate, s.planted,
                                                                          strict=True)
                                                        if not p]) for k, s in plain.items()]
    for model in sizes.aa_models:
        texts = responses(model)
        chosen = selected_prompts(300 if sizes is FULL else sizes.background)
        for seed in sizes.seeds:
            a, b = halves(len(chosen), seed)
            sides.append((f"{model} s{seed}", [texts[int(i)] for i in chosen[a]],
                          [texts[int(i)] for i in chosen[b]]))
    for name, a_texts, b_texts in sides:
        for prop, d in defs.items():
            fa, fb = flags(d, store, a_texts), flags(d, store, b_texts)
            out.append({"stream": name, "behaviour": prop, "events_per_side": min(len(fa),
                                                                                  len(fb)),
                        "share_a": float(fa.mean()), "share_b": float(fb.mean()),
                        "alarm": first_alarm(d, fa, fb, settings)})
    return out


def cost(store: CodeStore, defs: dict[str, BehaviourDefinition],
         texts: list[str]) -> dict[str, Any]:
    """Scoring time per event (all behaviours) beside the encoder's time per text."""
    many = texts * max(1, 5_000 // max(1, len(texts)))
    codes = store.codes(many)
    values = described(many, codes)  # extracted once per batch by the state anyway
    began = time.perf_counter()
    for _ in range(5):
        for d in defs.values():
            d.flags(codes, values)
    per_event = (time.perf_counter() - began) / 5 / len(codes)
    sample = texts[:16]
    began = time.perf_counter()
    store.encoder.encode_texts(sample, "response")
    encode = (time.perf_counter() - began) / len(sample)
    return {"behaviours": len(defs), "score_us_per_event": round(per_event * 1e6, 3),
            "encode_ms_per_text": round(encode * 1e3, 1),
            "score_share_of_encode": per_event / encode}


def markdown(results: dict[str, Any]) -> str:
    rows = results["streams"]
    lines = ["| property | planted | share ± (pp, mean abs err) | precision | recall | "
             "baseline flags | alarm at (events/side) |", "|---|---|---|---|---|---|---|"]
    for prop in dict.fromkeys(r["property"] for r in rows):
        for p in PREVALENCES:
            rs = [r for r in rows if r["property"] == prop and r["prevalence"] == p]
            err = np.mean([abs(r["estimated_share"] - r["planted_share"]) * 100 for r in rs])
            prec = [r["precision"] for r in rs if r["precision"] is not None]
            alarms = [str(r["first_alarm"]) if r["first_alarm"] else "–" for r in rs]
            lines.append(
                f"| {prop} | {p:.0%} | {np.mean([r['estimated_share'] for r in rs]):.1%} "
                f"({err:.1f}) | {np.mean(prec) if prec else float('nan'):.2f} | "
                f"{np.mean([r['recall'] for r in rs]):.2f} | "
                f"{np.mean([r['baseline_flag_rate'] for r in rs]):.1%} | {', '.join(alarms)} |")
    aa = results["aa"]
    c = results["cost"]
    lines += ["", f"A/A: {sum(bool(r['alarm']) for r in aa)} alarms in {len(aa)} (stream, "
              f"behaviour) runs; mean flag rate {np.mean([r['share_a'] for r in aa]):.2%}.",
              f"Scoring: {c['score_us_per_event']} µs per event for {c['behaviours']} "
              f"behaviours, against {c['encode_ms_per_text']} ms per text to encode "
              f"({c['score_share_of_encode']:.1e} of it).",
              f"State path check: {sum(r.get('state_matches', False) for r in rows)} of "
              f"{sum('state_matches' in r for r in rows)} streams give identical counts and "
              "first alarm through MonitorState → view → report."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--encode-only", action="store_true")
    p.add_argument("--sae", type=Path, default=None,
                   help="a sae-lens SAE directory instead of the shipped default")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    sizes = QUICK if args.quick else FULL
    kind: EncoderKind = "tiny" if args.quick else "default"
    encoder = build_encoder(kind, encode_settings(kind, sae=args.sae))
    store = CodeStore(encoder, (args.cache_dir or cache_dir()) / "detection" / encoder_key(encoder))
    examples, background = definitions_texts(sizes)
    needed = [*background, *(t for ex in examples.values() for t in ex)]
    needed += [t for s in streams(sizes) for t in (*s.baseline, *s.candidate)]
    store.ensure(needed)
    aa_texts = []
    for model in sizes.aa_models:
        aa_texts += [responses(model)[int(i)] for i in selected_prompts(
            300 if sizes is FULL else sizes.background)]
    store.ensure(aa_texts)
    if args.encode_only:
        return 0
    results = {"mode": "quick" if args.quick else "full", "encoder_id": store.encoder_id,
               "sizes": vars(sizes) | {"properties": list(sizes.properties)},
               **evaluate(sizes, store)}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "behaviour_results" + ("_quick" if args.quick else "")
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    (args.out / f"{name}.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
