"""The candidate SAE kept in benchmarks/candidates/ runs as it is: ``encode.sae.path`` finds its
presence thresholds, labels and cards beside it, and they describe its weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saewatch.config import EncodeSettings, SaeRef
from saewatch.encode.cards import cards_for_settings
from saewatch.encode.labels import labels_for_settings
from saewatch.encode.presence import resolve_presence
from saewatch.encode.sae import load_sae

CANDIDATE = Path(__file__).resolve().parents[2] / "benchmarks" / "candidates" / "sae8k-k64"


def test_the_candidate_loads_with_its_thresholds_labels_and_cards() -> None:
    loaded = load_sae(SaeRef(path=CANDIDATE), torch.device("cpu"))
    assert loaded.sae.cfg.d_sae == 8192 and loaded.hook_name == "blocks.12.hook_resid_post"
    report = json.loads((CANDIDATE / "training_report.json").read_text())
    assert report["train_tokens"] >= 5_000_000 and report["held_out"]["fve"] >= 0.85
    assert report["held_out"]["dead_share"] <= 0.02
    assert loaded.expectations.source == "training report"
    presence = resolve_presence("auto", loaded.directory, 8192)
    assert presence is not None and presence.info.median_present == 96
    settings = EncodeSettings(sae=SaeRef(path=CANDIDATE))
    encoder_id = f"SmolLM2-135M-Instruct/{loaded.hook_name}/{loaded.sae_id}/presence=x"
    labels = labels_for_settings(settings, 8192, encoder_id)
    cards = cards_for_settings(settings, 8192, encoder_id)
    assert labels is not None and cards is not None
    assert cards.d_sae == 8192 and sum(c.fired > 0 for c in cards.cards) >= 8000
    assert labels.label(1457) == cards.labels()[1457] == "concise"
    results = json.loads((CANDIDATE / "detection_results.json").read_text())
    assert results["setup"]["d_sae"] == 8192
    assert loaded.sae_id.split(":")[-1] in results["setup"]["encoder_id"]
