"""Labels by the optional LLM from marked top contexts, scored on held-out ones, against a
real local OpenAI-compatible server (``llm_server``: ``transformers serve`` of the embedded
SmolLM2). A 135M model labels poorly; what is checked is the path: the label is asked for,
cleaned, judged on every held-out context of both kinds, and kept only if its score passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from saewatch.cli import main
from saewatch.config import LLMSettings
from saewatch.datasets.alpaca import read_alpaca
from saewatch.encode.cards import default_cards_path
from saewatch.encode.labels import FeatureLabels
from saewatch.llm.client import ChatClient
from saewatch.llm.labels import MAX_LABEL_WORDS, llm_label, mark
from saewatch.models.cards import FeatureCards

pytestmark = pytest.mark.slow

WINDOW = 120  # characters of context either side of the "firing" span


def _contexts() -> tuple[list[str], list[str]]:
    """Real responses: a stand-in feature that fires on code fences (marked), and windows of
    responses without any code."""
    firing, silent = [], []
    for row in read_alpaca("gpt4_1106_preview"):
        text = row.output
        at = text.find("```")
        if at >= 0 and len(firing) < 8:
            window = text[max(0, at - WINDOW): at + WINDOW]
            pieces = window.split("```")
            firing.append(mark([p for part in pieces for p in (part, "```")][:-1],
                               [0.0 if i % 2 == 0 else 1.0
                                for i in range(2 * len(pieces) - 1)]))
        elif "```" not in text and "def " not in text and len(silent) < 3:
            silent.append(text[:2 * WINDOW])
    return firing, silent


def test_an_llm_label_is_scored_on_held_out_contexts(llm_server: LLMSettings) -> None:
    firing, silent = _contexts()
    assert len(firing) == 8 and len(silent) == 3 and "«```»" in firing[0]
    verdict = llm_label(ChatClient(llm_server), firing, silent, min_score=0.7, explain=5)
    assert verdict.label and len(verdict.label.split()) <= MAX_LABEL_WORDS
    assert verdict.true_pos + verdict.false_neg == 3  # the held-out firing contexts
    assert verdict.false_pos + verdict.true_neg == 3  # every silent context judged
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.kept == (verdict.score >= 0.7)


def test_the_llm_labels_command_writes_the_cards_labels_with_the_kept_ones(
    llm_server: LLMSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``saewatch llm-labels`` on the shipped cards: two features with full cards are labelled
    and scored, one that never fired is skipped; the labels file keeps every card label except
    where the LLM's label was kept."""
    config = tmp_path / "saewatch.yaml"
    config.write_text(yaml.safe_dump({"labels": {"llm": llm_server.model_dump(mode="json")}}))
    out = tmp_path / "labels.json"
    rc = main(["llm-labels", "--config.file", str(config), "--feature", "100", "--feature",
               "101", "--feature", "7", "--output", str(out)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["features_scored"] == 2  # feature 7 has no contexts
    rows = {r["feature"]: r for r in printed["features"]}
    assert sorted(rows) == [100, 101]
    cards = FeatureCards.load(default_cards_path())
    labels = FeatureLabels.model_validate_json(out.read_text())
    assert labels.d_sae == cards.d_sae == 4096
    for feature, row in rows.items():
        assert row["previous"] == cards.get(feature).label  # type: ignore[union-attr]
        assert row["kept"] == (row["score"] >= llm_server.min_label_score)
        assert labels.label(feature) == (row["llm_label"] if row["kept"] else row["previous"])
    untouched = [c for c in cards.cards if c.label and c.feature not in rows][:50]
    assert all(labels.label(c.feature) == c.label for c in untouched)


def test_the_llm_labels_command_without_an_llm_says_what_to_configure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["llm-labels", "--feature", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("saewatch: llm-labels needs labels.llm (base_url, model) in the "
                           "configuration")
