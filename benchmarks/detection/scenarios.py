"""The benchmark's streams: A/A splits, real version pairs and planted properties.

Every stream has a baseline and a candidate side that answer *disjoint halves* of a seeded prompt
selection (two versions never see identical traffic), each side in its own seeded random order.
Halves come from :mod:`benchmarks.quality.alpaca_codes` (shared with the diff tests); prompt
selections are nested so that the pair and planted streams share encoded texts. Texts are the AlpacaEval responses of the full corpus (``$SAEWATCH_DATA_DIR``, by default
``../shared/data`` beside the project: see :mod:`benchmarks`); ``--quick`` reads only the
shipped demo sample.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import numpy as np

from benchmarks.detection.properties import PROPERTIES, PlantedProperty
from benchmarks.quality.alpaca_codes import N_ALPACA, halves
from saewatch.datasets import read_alpaca

logger = logging.getLogger(__name__)

Scenario = Literal["aa", "pair", "planted"]
NULL_MODEL = "NullModel"
PAIRS: tuple[tuple[str, str], ...] = (
    ("gpt4_1106_preview", "gpt4_1106_preview_concise"),
    ("gpt4_1106_preview", "gpt4_1106_preview_verbose"),
    ("claude-2.1", "claude-2.1_concise"),
    ("claude-2.1", "claude-2.1_verbose"),
    ("Mistral-7B-Instruct-v0.2", "Snorkel-Mistral-PairRM-DPO"),
    ("gpt4_1106_preview", NULL_MODEL),
)


@dataclass(frozen=True)
class Plan:
    """Sizes of one run. ``full()`` is what docs/BENCHMARKS.md reports; ``quick()`` a smoke test."""

    pair_prompts: int  # prompts per model in A/A and pair streams (half per side)
    planted_prompts: int  # prompts of the planted base model (half per side)
    planted_base: str
    aa_models: tuple[str, ...]
    aa_seeds: tuple[int, ...]
    pairs: tuple[tuple[str, str], ...]
    pair_seeds: tuple[int, ...]
    properties: tuple[str, ...]
    prevalences: tuple[float, ...]
    planted_seeds: tuple[int, ...]
    look_every: int = 10  # events per side between two looks at the report
    # Pairs use one prompt split; their seeds reorder it (candidate-only models need half the
    # prompts encoded, which keeps the full run within its CPU budget).
    pair_split_seed: int = 1

    @classmethod
    def full(cls) -> Plan:
        return cls(
            pair_prompts=300, planted_prompts=400, planted_base="gpt4_1106_preview",
            aa_models=("gpt4_1106_preview", "claude-2.1", "Mistral-7B-Instruct-v0.2",
                       "Snorkel-Mistral-PairRM-DPO"),
            aa_seeds=(1, 2, 3, 4, 5), pairs=PAIRS, pair_seeds=(1, 2, 3),
            properties=tuple(PROPERTIES), prevalences=(0.01, 0.05, 0.20),
            planted_seeds=(1, 2, 3),
        )

    @classmethod
    def quick(cls) -> Plan:
        # Only models of the shipped demo sample (full 805-answer files): the smoke test runs
        # in a plain clone, where the full corpus is absent.
        return cls(
            pair_prompts=160, planted_prompts=160, planted_base="claude-2.1",
            aa_models=("claude-2.1", "claude-2.1_concise"), aa_seeds=(1, 2),
            pairs=(("claude-2.1", NULL_MODEL),), pair_seeds=(1,),
            properties=("german_prefix",), prevalences=(0.2,), planted_seeds=(1,),
        )


@dataclass(frozen=True)
class Doc:
    """One response in a stream; ``planted`` marks an edited one."""

    event_id: str
    text: str
    planted: bool = False


@dataclass(frozen=True)
class Stream:
    """Two sides of one scenario, in arrival order."""

    scenario: Scenario
    name: str
    baseline: tuple[Doc, ...]
    candidate: tuple[Doc, ...]
    params: dict[str, str | int | float] = field(default_factory=dict)
    prop: PlantedProperty | None = None

    @property
    def length(self) -> int:
        """Events per side that the looks cover."""
        return min(len(self.baseline), len(self.candidate))

    def texts(self) -> list[str]:
        return [d.text for d in (*self.baseline, *self.candidate)]


@cache
def responses(model: str) -> tuple[str, ...]:
    """All 805 responses of ``model``, in instruction order."""
    return tuple(r.output for r in read_alpaca(model))


def _side(model: str, prompts: np.ndarray, seed: int, tag: str = "") -> list[Doc]:
    order = np.random.default_rng(seed).permutation(len(prompts))
    texts = responses(model)
    return [Doc(f"{model}{tag}:{int(prompts[i])}", texts[int(prompts[i])]) for i in order]


def selected_prompts(n: int) -> np.ndarray:
    """The first ``n`` of one seeded order of the AlpacaEval prompts (nested: 300 within 400)."""
    return np.sort(np.random.default_rng(0).permutation(N_ALPACA)[:n])


def _split(n_prompts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    chosen = selected_prompts(n_prompts)
    first, second = halves(len(chosen), seed)
    return chosen[first], chosen[second]


def aa_streams(plan: Plan) -> Iterator[Stream]:
    """One model's responses split at random into two "versions"."""
    for model in plan.aa_models:
        n = plan.planted_prompts if model == plan.planted_base else plan.pair_prompts
        for seed in plan.aa_seeds:
            a, b = _split(n, seed)
            yield Stream("aa", f"{model} s{seed}", tuple(_side(model, a, seed)),
                         tuple(_side(model, b, seed + 1000)), {"model": model, "seed": seed})


def pair_streams(plan: Plan) -> Iterator[Stream]:
    """A real version pair: baseline model on one half of the prompts, candidate on the other."""
    for base, cand in plan.pairs:
        a, b = _split(plan.pair_prompts, plan.pair_split_seed)
        for seed in plan.pair_seeds:
            yield Stream("pair", f"{base} → {cand} s{seed}", tuple(_side(base, a, seed)),
                         tuple(_side(cand, b, seed + 1000)),
                         {"baseline": base, "candidate": cand, "seed": seed})


def planted_streams(plan: Plan) -> Iterator[Stream]:
    """The base model on both sides; a fraction ``p`` of candidate responses gets the property.

    The planted rows of a seed are nested across prevalences (the 1% rows are among the 5% rows)
    and spread uniformly over the candidate stream.
    """
    base = plan.planted_base
    for seed in plan.planted_seeds:
        a, b = _split(plan.planted_prompts, seed)
        baseline = tuple(_side(base, a, seed))
        candidate = _side(base, b, seed + 1000)
        rank = np.random.default_rng(seed + 2000).permutation(len(candidate))
        for name in plan.properties:
            prop = PROPERTIES[name]
            for p in plan.prevalences:
                k = max(1, round(p * len(candidate)))
                chosen = set(rank[:k].tolist())
                docs = tuple(Doc(f"{d.event_id}+{name}", prop.apply(d.text), True)
                             if i in chosen else d for i, d in enumerate(candidate))
                yield Stream("planted", f"{name} p={p:.0%} s{seed}", baseline, docs,
                             {"property": name, "prevalence": p, "seed": seed, "planted": k},
                             prop)


def all_streams(plan: Plan) -> list[Stream]:
    return [*aa_streams(plan), *pair_streams(plan), *planted_streams(plan)]


def marker_base_rate(plan: Plan, names: Sequence[str]) -> dict[str, float]:
    """Share of the planted base model's original responses that already contain each marker."""
    texts = responses(plan.planted_base)
    return {n: sum(PROPERTIES[n].marker in t for t in texts) / len(texts) for n in names}
