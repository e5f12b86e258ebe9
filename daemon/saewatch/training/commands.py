"""What the encode CLI commands do: ``encode-file``, ``train-sae``, ``label-features``.

:mod:`saewatch.cli` only parses arguments and calls these.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from saewatch.config import EncodeSettings
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.exceptions import EncodeError
from saewatch.encode.labels import FeatureLabels, labels_for_settings
from saewatch.models import TEXT_FIELDS, FeatureBatch, LLMEvent, SparseCodes
from saewatch.training.corpus import training_texts
from saewatch.training.labelling import build_labels
from saewatch.training.train import ActivationSet, extract_activations

logger = logging.getLogger(__name__)

CHUNK = 64  # events per encoder call while streaming a file
TOP_FEATURES = 20


@dataclass
class EncodeSummary:
    """Totals of an ``encode-file`` run (printed as JSON)."""

    encoder_id: str = ""
    events: int = 0
    invalid_lines: list[int] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=lambda: {f: 0 for f in TEXT_FIELDS})
    truncated: dict[str, int] = field(default_factory=lambda: {f: 0 for f in TEXT_FIELDS})
    seconds: float = 0.0
    doc_freq: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, batch: FeatureBatch) -> None:
        self.events += len(batch)
        for name in TEXT_FIELDS:
            codes = batch.codes(name)
            self.tokens[name] += int(codes.n_tokens.sum())
            self.truncated[name] += int(codes.truncated.sum())
            counts = np.bincount(codes.indices, minlength=batch.d_sae)
            self.doc_freq[name] = self.doc_freq.get(name, 0) + counts

    def as_dict(self, encoder: SAEEncoder, labels: FeatureLabels | None) -> dict[str, object]:
        health = encoder.health
        top: dict[str, list[dict[str, object]]] = {}
        for name, counts in self.doc_freq.items():
            order = np.argsort(-counts, kind="stable")[:TOP_FEATURES]
            top[name] = [
                {
                    "feature": int(f),
                    "doc_frequency": round(float(counts[f]) / max(self.events, 1), 4),
                    "label": labels.label(int(f)) if labels is not None else None,
                }
                for f in order
            ]
        total_tokens = sum(self.tokens.values())
        return {
            "encoder_id": self.encoder_id,
            "events": self.events,
            "invalid_lines": self.invalid_lines,
            "tokens": self.tokens,
            "truncated_texts": self.truncated,
            "seconds": round(self.seconds, 2),
            "events_per_s": round(self.events / self.seconds, 2) if self.seconds else None,
            "tokens_per_s": round(total_tokens / self.seconds, 1) if self.seconds else None,
            "sanity": {"fve": health.fve, "mean_l0": health.mean_l0, "warnings": health.warnings},
            "top_features": top,
        }


def codes_row(codes: SparseCodes, i: int) -> dict[str, object]:
    indices, values = codes.row(i)
    return {
        "indices": indices.tolist(),
        "values": [round(float(v), 3) for v in values],
        "n_tokens": int(codes.n_tokens[i]),
        "truncated": bool(codes.truncated[i]),
    }


def encode_events(
    encoder: SAEEncoder,
    events: Iterable[LLMEvent],
    summary: EncodeSummary,
    out: IO[str] | None,
    limit: int | None = None,
) -> None:
    """Encode ``events`` in chunks; write one JSON line of codes per event to ``out``."""
    started = time.monotonic()
    chunk: list[LLMEvent] = []
    for n, event in enumerate(events):
        if limit is not None and n >= limit:
            break
        chunk.append(event)
        if len(chunk) == CHUNK:
            _flush(encoder, chunk, summary, out)
            chunk = []
    if chunk:
        _flush(encoder, chunk, summary, out)
    summary.seconds = time.monotonic() - started


def _flush(
    encoder: SAEEncoder, chunk: list[LLMEvent], summary: EncodeSummary, out: IO[str] | None
) -> None:
    batch = encoder.encode(chunk)
    summary.add(batch)
    if out is not None:
        for i, event in enumerate(batch.events):
            record = {
                "event_id": event.event_id,
                "model_id": event.model_id,
                "model_version": event.model_version,
                "encoder_id": batch.encoder_id,
                "prompt": codes_row(batch.prompt, i),
                "response": codes_row(batch.response, i),
            }
            out.write(json.dumps(record) + "\n")
    logger.info("encoded %d events", summary.events)


def run_encode_file(
    settings: EncodeSettings,
    events: Iterable[LLMEvent],
    output: IO[str] | None,
    limit: int | None,
    invalid_lines: Sequence[int] = (),
) -> dict[str, object]:
    """Encode ``events`` (read lazily by the caller); return the summary.

    ``invalid_lines`` is the caller's list of skipped input lines, read once the events are
    consumed (it fills while they are read).
    """
    encoder = SAEEncoder.from_settings(settings)
    summary = EncodeSummary(encoder_id=encoder.encoder_id)
    encode_events(encoder, events, summary, output, limit)
    summary.invalid_lines = list(invalid_lines)
    return summary.as_dict(encoder, labels_for_settings(settings, encoder.d_sae))


def run_label_features(
    settings: EncodeSettings, activations: Path | None, tokens: int, output: Path
) -> dict[str, object]:
    """Label the configured SAE's features from corpus activations; write the labels file.

    ``activations`` is an ``.npz`` cached by ``train-sae`` (same hook), of which the first
    ``tokens`` are used; without it, hook activations of ``tokens`` training-corpus tokens
    are computed first.
    """
    encoder = SAEEncoder.from_settings(settings)
    if activations is not None:
        data = ActivationSet.load(activations).head(tokens)
    else:
        prompts, responses = training_texts()
        texts = [(p, "prompt") for p in prompts] + [(r, "response") for r in responses]
        random.Random(1).shuffle(texts)
        data = extract_activations(encoder.reader, texts, tokens)  # type: ignore[arg-type]
    if data.acts.shape[1] != encoder.reader.d_model:
        raise EncodeError(
            f"{activations} holds activations of width {data.acts.shape[1]}, "
            f"the model's hook has {encoder.reader.d_model}"
        )
    labels = build_labels(encoder.sae, data, encoder.reader.text.tokenizer, encoder.encoder_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(labels.model_dump_json(indent=1, exclude_none=True) + "\n", encoding="utf-8")
    fired = sum(1 for f in labels.features if f.top_tokens)
    return {
        "output": str(output),
        "features": len(labels.features),
        "labelled": fired,
        "tokens": int(len(data.acts)),
    }
