"""Real document codes of the shipped encoder for the capacity benchmarks, raw and thresholded.

The state's cost follows the number of present features per document, so capacity is measured
on the default model and SAE's own codes of real AlpacaEval events (the demo sample's claude-2.1
and claude-2.1_concise: prompts and responses), as the daemon makes them (256 tokens per field):
*raw* (every feature above ``encode.threshold``, the codes before presence thresholds) and
*thresholded* (:meth:`PresenceThresholds.apply` with the shipped
``presence_thresholds.json``, what ``saewatch encode`` publishes now).

Codes come from the detection benchmark's cache when it holds them
(``<cache>/detection/<encoder key>/shard-*.npz``: raw response codes by text digest,
:class:`benchmarks.detection.cache.CodeStore`); what is missing (on a plain clone: everything,
and always the prompts) is encoded once with the default encoder and cached the same way
(responses beside the detection benchmark's, prompts under ``<cache>/perf/<encoder key>/prompt``).
A cold cache costs about a minute of CPU per hundred events (~5–10 minutes for the default
512 on a 2-core CPU); later runs load in seconds (plus the model, to name the cache).
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from saewatch.datasets import alpaca_events
from saewatch.models import FeatureBatch, LLMEvent, SparseCodes
from saewatch.state.testing import T0

logger = logging.getLogger(__name__)

MODELS = ("claude-2.1", "claude-2.1_concise")  # the shipped sample, less NullModel (one string)


@dataclass(frozen=True)
class RealCodes:
    """Real events with their codes, raw and thresholded, in the same order."""

    encoder_id: str
    d_sae: int
    events: tuple[LLMEvent, ...]
    raw: dict[str, SparseCodes]  # field -> codes of every event, before presence thresholds
    thresholded: dict[str, SparseCodes]

    def codes(self, thresholded: bool) -> dict[str, SparseCodes]:
        return self.thresholded if thresholded else self.raw

    def present(self, field: str, thresholded: bool) -> dict[str, float]:
        """Median and mean present features per document of ``field``."""
        counts = np.diff(self.codes(thresholded)[field].indptr)
        return {"median": float(np.median(counts)), "mean": round(float(counts.mean()), 1)}


def load_real_codes(n_events: int, cache: Path | None = None) -> RealCodes:
    """``n_events`` sample events (those already cached first) with their real codes.

    Loaded in a child process: the encoder brings torch and transformers, hundreds of thousands
    of Python objects that every full garbage collection of this process would then walk (the
    features decode measured 1.7x slower beside them), and the aggregator never loads them.
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        real: RealCodes = pool.apply(_load_here, (n_events, cache))
    return real


def _load_here(n_events: int, cache: Path | None) -> RealCodes:
    from benchmarks.detection.cache import CodeStore, encoder_key
    from benchmarks.detection.encoders import build_encoder, encode_settings
    from saewatch.encode.default import cache_dir

    encoder = build_encoder("default", encode_settings("default"))
    root = cache or cache_dir()
    key = encoder_key(encoder)
    responses = CodeStore(encoder, root / "detection" / key, field="response")
    prompts = CodeStore(encoder, root / "perf" / key / "prompt", field="prompt")
    pool = [e for m in MODELS for e in alpaca_events(m, model_id="bench")]
    cached = [e for e in pool if responses.has(e.response)]
    chosen = (cached + [e for e in pool if not responses.has(e.response)])[:n_events]
    logger.info("real codes: %d events, %d responses cached", len(chosen),
                min(len(cached), len(chosen)))
    responses.ensure([e.response for e in chosen])
    prompts.ensure([e.prompt for e in chosen])
    raw = {"prompt": prompts.codes([e.prompt for e in chosen], presence=False),
           "response": responses.codes([e.response for e in chosen], presence=False)}
    presence = encoder.presence
    if presence is None:
        raise RuntimeError("the default encoder has no presence thresholds to apply")
    return RealCodes(encoder.encoder_id, encoder.d_sae, tuple(chosen), raw,
                     {f: presence.apply(c) for f, c in raw.items()})


def real_batches(real: RealCodes, thresholded: bool, n_batches: int, batch: int,
                 versions: int = 2, start: int = 0) -> list[FeatureBatch]:
    """``n_batches`` batches cycling over the real events under fresh ids, alternating between
    ``versions`` model versions (a canary) with one metadata label, 10 ms apart."""
    codes = real.codes(thresholded)
    n = len(real.events)
    out = []
    for j in range(n_batches):
        rows = (np.arange(j * batch, (j + 1) * batch) + start) % n
        events = tuple(
            real.events[r].model_copy(update={
                "event_id": f"e{start + j * batch + i}",
                "model_version": f"v{i % versions}",
                "timestamp": T0 + timedelta(seconds=0.01 * (start + j * batch + i)),
                "metadata": {"tenant": f"t{i % 4}"}})
            for i, r in enumerate(rows.tolist()))
        out.append(FeatureBatch(encoder_id=real.encoder_id, d_sae=real.d_sae, events=events,
                                prompt=codes["prompt"].take(rows),
                                response=codes["response"].take(rows)))
    return out
