"""Feature cards: built from token codes whose answers are known, labelled from their contexts,
written and read back, matched to the SAE they describe; and the label-quality measure."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from saewatch.config import EncodeSettings, SaeRef
from saewatch.encode.cards import cards_for_settings, default_cards_path
from saewatch.encode.labels import labels_for_settings
from saewatch.models.cards import CardsError, FeatureCards
from saewatch.training.card_commands import labels_from_cards, snippet
from saewatch.training.cards import build_cards, firing_stats, npmi_neighbours
from saewatch.training.context_labels import context_label, label_terms
from saewatch.training.label_quality import evaluate_labels, sample_features
from saewatch.training.tokencodes import TokenCodes

D_SAE = 6
CAPITAL, NEWLINE, RARE, PAIRED, NEVER = 0, 1, 2, 3, 5
VOCAB = [" the", " capital", " of", " France", " is", " Paris", "\n", " and", " a", " dog"]


def _text(token_id: int) -> str:
    return VOCAB[token_id]


def _codes(docs: int = 30) -> TokenCodes:
    """Texts ``the capital of France is Paris \\n and a dog``: feature 0 fires on " Paris"
    (strength growing with the text's index), 1 on the newline, 3 with 0 on " Paris" and 4 on
    every " the"; 2 fires once, 5 never."""
    token_ids, doc_ids, ids, vals = [], [], [], []
    for d in range(docs):
        for t in range(len(VOCAB)):
            token_ids.append(t)
            doc_ids.append(d)
            row = {5: {CAPITAL: 1.0 + d / 10, PAIRED: 0.5}, 6: {NEWLINE: 2.0},
                   0: {4: 0.3}}.get(t, {})
            if d == 7 and t == 9:
                row = {RARE: 0.9}
            items = sorted(row.items())[:2] + [(0, 0.0)] * (2 - len(row))
            ids.append([f for f, _ in items])
            vals.append([v for _, v in items])
    return TokenCodes(np.array(token_ids, np.int32), np.array(doc_ids, np.int32),
                      np.array(ids, np.int32), np.array(vals, np.float16),
                      [" ".join(VOCAB)] * docs, ["response"] * docs)


def test_cards_hold_the_known_contexts_counts_and_neighbours() -> None:
    codes = _codes()
    cards = build_cards(codes, D_SAE, _text, sae_id="toy/sae", corpus="toy")
    capital = cards.get(CAPITAL)
    assert capital is not None
    assert capital.fired == 30 and capital.documents == 30
    assert capital.density == pytest.approx(30 / len(codes), abs=1e-6)
    assert capital.max_activation == pytest.approx(3.9, abs=0.01)
    # One context per text, the strongest texts first, the peak on " Paris".
    peaks = [c.activation for c in capital.contexts]
    assert peaks == sorted(peaks, reverse=True) and len(peaks) == 8
    assert peaks[0] == pytest.approx(3.9, abs=0.01)
    top = capital.contexts[0]
    assert top.tokens[top.peak] == " Paris"
    assert [a > 0 for a in top.activations] == [t == " Paris" for t in top.tokens]
    assert [(t.token, t.count, t.share) for t in capital.top_tokens] == [(" Paris", 30, 1.0)]
    assert [n.feature for n in capital.neighbours] == [PAIRED]
    assert capital.neighbours[0].npmi == pytest.approx(1.0)
    assert cards.get(NEVER).fired == 0 and cards.get(NEVER).contexts == ()
    assert cards.get(RARE).neighbours == ()  # one token together is below MIN_JOINT


def test_windows_stay_inside_their_text() -> None:
    codes = _codes(docs=3)
    cards = build_cards(codes, D_SAE, _text)
    for context in cards.get(CAPITAL).contexts:
        assert context.tokens[0] == " the"  # 12 tokens back would reach the previous text
        assert context.tokens[-1] == " a"  # peak + 3 after


def test_labels_come_from_the_contexts() -> None:
    cards = build_cards(_codes(), D_SAE, _text)
    capital = cards.get(CAPITAL).label
    # The peak token leads; the words before it in every context follow (rarer ones first).
    assert capital.startswith("Paris") and "capital" in capital and "france" in capital
    assert cards.get(NEWLINE).label.startswith("'\\n'")
    assert cards.get(NEVER).label == "(never fired in the corpus)"
    assert label_terms(capital)[0] == "paris"


def test_a_label_without_typical_words_falls_back_to_peak_tokens() -> None:
    from saewatch.models.cards import CardContext

    contexts = [CardContext(tokens=(" x", f" {n}"), activations=(0.0, 1.0)) for n in (4, 5, 6)]
    assert context_label(contexts, [], lambda w: 0.5) == "4 / 5 / 6"


def test_npmi_of_features_that_never_meet_is_not_listed() -> None:
    codes = _codes()
    stats = firing_stats(codes, D_SAE)
    neighbours = npmi_neighbours(codes, stats, D_SAE)
    assert all(n.feature != NEWLINE for n in neighbours[CAPITAL])


def test_cards_round_trip_compressed(tmp_path: Path) -> None:
    cards = build_cards(_codes(), D_SAE, _text, sae_id="toy/sae")
    path = tmp_path / "feature_cards.json.gz"
    cards.save(path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert FeatureCards.load(path) == cards
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(b'{"d_sae": 0, "cards": []}'))
    with pytest.raises(CardsError, match="not a feature cards file"):
        FeatureCards.load(tmp_path / "bad.json.gz")
    with pytest.raises(CardsError, match="cannot read"):
        FeatureCards.load(tmp_path / "missing.json.gz")


def test_the_labels_file_carries_the_context_labels() -> None:
    cards = build_cards(_codes(), D_SAE, _text, sae_id="toy/sae/presence=abcd1234")
    labels = labels_from_cards(cards).labels
    assert labels.sae_id == "toy/sae"
    assert labels.label(CAPITAL) == cards.get(CAPITAL).label
    assert labels.get(CAPITAL).examples[0].endswith("⟦ Paris⟧ \n and a".replace(" \n", ""))
    assert snippet(cards.get(CAPITAL).contexts[0]).count("⟦") == 1


def test_configured_cards_must_fit_the_sae(tmp_path: Path) -> None:
    path = tmp_path / "cards.json.gz"
    build_cards(_codes(), D_SAE, _text).save(path)
    assert cards_for_settings(EncodeSettings(cards_path=path), D_SAE) is not None
    with pytest.raises(CardsError, match="describes an SAE of 6 features"):
        cards_for_settings(EncodeSettings(cards_path=path), 4096)
    other_sae = EncodeSettings(sae=SaeRef(path=tmp_path))
    assert cards_for_settings(other_sae, D_SAE) is None  # the shipped cards are the default's


def test_cards_and_labels_beside_a_configured_sae_folder_are_found(tmp_path: Path) -> None:
    """``saewatch feature-cards --labels-out`` beside ``encode.sae.path`` is all it takes; a
    renamed copy of the folder keeps them, retrained weights (another digest) do not."""
    folder = tmp_path / "my-sae"
    folder.mkdir()
    cards = build_cards(_codes(), D_SAE, _text, sae_id="my-sae:topk-6-0123456789")
    cards.save(folder / "feature_cards.json.gz")
    labels_from_cards(cards).write(folder / "feature_labels.json")
    settings = EncodeSettings(sae=SaeRef(path=folder))
    copy_id = "M/blocks.1.hook_resid_post/copy:topk-6-0123456789/presence=ab"
    found = cards_for_settings(settings, D_SAE, copy_id)
    assert found is not None and found.labels() == cards.labels() != {}
    labels = labels_for_settings(settings, D_SAE, copy_id)
    assert labels is not None and labels.label(CAPITAL) == cards.labels()[CAPITAL]
    retrained = "M/blocks.1.hook_resid_post/my-sae:topk-6-fedcba9876"
    assert cards_for_settings(settings, D_SAE, retrained) is None
    assert labels_for_settings(settings, D_SAE, retrained) is None
    hub = EncodeSettings(sae=SaeRef(release="r", sae_id="s"))
    assert cards_for_settings(hub, D_SAE) is None and labels_for_settings(hub, D_SAE) is None


def test_the_shipped_cards_match_the_default_sae() -> None:
    cards = cards_for_settings(EncodeSettings(), 4096)
    assert cards is not None and default_cards_path().stat().st_size < 8_000_000
    assert len(cards.cards) == cards.d_sae == 4096
    assert cards_for_settings(EncodeSettings(), 4096, encoder_id="another/sae") is None
    live = [c for c in cards.cards if c.fired]
    assert len(live) >= 0.8 * cards.d_sae and all(c.contexts for c in live)
    assert all(max(x.activations) == x.activation > 0 for c in live[:50] for x in c.contexts)


def test_label_quality_counts_tokens_where_the_label_says_and_the_feature_fires() -> None:
    codes = _codes()
    labels = {CAPITAL: "Paris", NEWLINE: "dog (france)"}
    result = evaluate_labels(codes, labels, _text, np.full(D_SAE, 0.1), [CAPITAL, NEWLINE])
    rows = {r["feature"]: r for r in result["features"]}  # type: ignore[index]
    capital, newline = rows[CAPITAL], rows[NEWLINE]
    # "Paris" is the firing token itself: right on every token it names.
    assert (capital["token_present_precision"], capital["token_present_recall"]) == (1.0, 1.0)
    # ... and its window also covers the four tokens after " Paris", where the feature is off.
    assert capital["window_present_precision"] == pytest.approx(1 / 5)
    assert capital["window_present_recall"] == 1.0
    # " dog" comes after the newline, " France" three tokens before it: window mode only.
    assert newline["token_present_recall"] == 0.0
    assert newline["window_present_recall"] == 1.0
    assert newline["window_present_precision"] == pytest.approx(1 / 6, abs=1e-4)  # France's 5 + dog
    summary = result["window_present"]  # type: ignore[index]
    assert summary["mean_recall"] == 1.0 and summary["features_with_recall"] == 2
    # Below its presence threshold the feature does not count as firing.
    strict = evaluate_labels(codes, labels, _text, np.full(D_SAE, 5.0), [CAPITAL])
    row = strict["features"][0]  # type: ignore[index]
    assert row["window_present_fires"] == 0 and row["window_present_recall"] is None
    assert row["window_nonzero_fires"] == 30
    assert sample_features(range(100), 5, seed=0) == sample_features(range(100), 5, seed=0)


def test_the_shipped_cards_are_not_served_for_another_encoder() -> None:
    """The default SAE's cards describe its 4,096 features; an encoder of another SAE (here a
    tiny random one, with the default settings otherwise) gets none."""
    from saewatch.config import EncodeSettings
    from saewatch.encode.cards import cards_for_settings

    assert cards_for_settings(EncodeSettings(), 256, "tiny/blocks.1.hook_resid_post/random") is None
