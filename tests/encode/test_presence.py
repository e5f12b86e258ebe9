"""Per-feature presence thresholds: the file, the CSR filter, calibration on a tiny model, and
the encoder applying them (``encode.presence_thresholds``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from transformers import PreTrainedTokenizerBase

from saewatch.cli import main
from saewatch.config import EncodeSettings, SaeRef
from saewatch.datasets import alpaca_events
from saewatch.encode.encoder import SAEEncoder
from saewatch.encode.exceptions import PresenceThresholdsError
from saewatch.encode.presence import (
    PRESENCE_FILE,
    PresenceInfo,
    PresenceThresholds,
    filter_codes,
)
from saewatch.encode.sae import load_sae
from saewatch.errors import SaewatchError
from saewatch.models import SparseCodes
from saewatch.training.calibration import (
    CorpusActivations,
    calibrate,
    feature_quantiles,
    fit_thresholds,
    present_counts,
)
from tests.support.encode import make_tiny_llama, save_tiny_model

HOOK = "blocks.1.hook_resid_post"
D_SAE = 256  # save_tiny_model's SAE


def _random_codes(rng: np.random.Generator, n_docs: int, d_sae: int) -> SparseCodes:
    rows, values = [], []
    for _ in range(n_docs):
        ids = np.sort(rng.choice(d_sae, size=int(rng.integers(0, d_sae // 2)), replace=False))
        rows.append(ids.tolist())
        values.append(rng.gamma(1.0, 1.0, size=len(ids)).tolist())
    return SparseCodes.from_rows(rows, values, n_tokens=list(range(1, n_docs + 1)))


def _rows(codes: SparseCodes) -> list[tuple[list[int], list[float]]]:
    return [(i.tolist(), v.tolist()) for i, v in (codes.row(j) for j in range(len(codes)))]


# --- the file -----------------------------------------------------------------------------


def test_save_and_load_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    info = PresenceInfo(rule="test", quantile=0.999, rho=0.5, corpus="c", documents=7,
                        target_present=48.0, median_present=47.5, sae_id="sae-x")
    saved = PresenceThresholds(rng.gamma(2.0, 3.0, size=4096) / 7.0, info)
    path = tmp_path / "sub" / PRESENCE_FILE
    saved.save(path)
    loaded = PresenceThresholds.load(path, d_sae=4096)
    assert loaded.values.dtype == np.float32
    np.testing.assert_array_equal(loaded.values, saved.values)
    assert loaded.digest == saved.digest and loaded.info == info
    assert path.stat().st_size < 200_000
    # Saving what was loaded writes the very same file: the rounding is idempotent.
    again = tmp_path / "again.json"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()


def test_values_are_rounded_to_six_significant_digits() -> None:
    t = PresenceThresholds(np.array([0.123456789, 12345.6789, 0.0]))
    assert t.values.tolist() == pytest.approx([0.123457, 12345.7, 0.0], rel=1e-7)


def test_the_digest_follows_the_values() -> None:
    a = PresenceThresholds(np.array([1.0, 2.0]))
    assert a.digest == PresenceThresholds(np.array([1.0, 2.0])).digest
    assert a.digest != PresenceThresholds(np.array([1.0, 2.5])).digest


def test_wrong_length_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / PRESENCE_FILE
    PresenceThresholds(np.ones(128)).save(path)
    with pytest.raises(PresenceThresholdsError, match="128 thresholds but the SAE has 256") as exc:
        PresenceThresholds.load(path, d_sae=256)
    assert isinstance(exc.value, SaewatchError)
    assert "calibrate-thresholds" in str(exc.value)


@pytest.mark.parametrize("content, match", [
    ("not json", "not a presence thresholds file"),
    ('{"format": 1, "d_sae": 3, "info": {}, "thresholds": [1.0, 2.0]}', "lists 2 thresholds"),
    ('{"format": 2, "d_sae": 1, "info": {}, "thresholds": [1.0]}', "not a presence thresholds"),
    ('{"format": 1, "d_sae": 2, "info": {}, "thresholds": [1.0, -1.0]}', "finite and >= 0"),
])
def test_malformed_files_are_refused(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / PRESENCE_FILE
    path.write_text(content)
    with pytest.raises(PresenceThresholdsError, match=match):
        PresenceThresholds.load(path)


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(PresenceThresholdsError, match="calibrate-thresholds --out"):
        PresenceThresholds.load(tmp_path / "nothing.json")


def test_non_finite_thresholds_are_refused() -> None:
    with pytest.raises(PresenceThresholdsError, match="finite"):
        PresenceThresholds(np.array([1.0, np.inf]))


# --- the filter ---------------------------------------------------------------------------


def test_filter_matches_a_naive_implementation() -> None:
    rng = np.random.default_rng(1)
    codes = _random_codes(rng, n_docs=40, d_sae=64)
    thresholds = rng.gamma(1.0, 1.0, size=64).astype(np.float32)
    kept = filter_codes(codes, thresholds)
    naive = []
    for ids, vals in _rows(codes):
        pairs = [(i, v) for i, v in zip(ids, vals, strict=True)
                 if np.float32(v) >= thresholds[i]]
        naive.append(([i for i, _ in pairs], [v for _, v in pairs]))
    assert _rows(kept) == naive
    assert kept.values.dtype == np.float16 and kept.indices.dtype == np.int32
    np.testing.assert_array_equal(kept.n_tokens, codes.n_tokens)
    assert 0 < len(kept.indices) < len(codes.indices)


def test_a_value_equal_to_its_threshold_is_present() -> None:
    codes = SparseCodes.from_rows([[0, 1]], [[0.5, 0.25]])
    kept = PresenceThresholds(np.array([0.5, 0.3])).apply(codes)
    assert kept.indices.tolist() == [0]


def test_filter_of_empty_codes() -> None:
    codes = SparseCodes.from_rows([[], []], [[], []])
    kept = filter_codes(codes, np.ones(4, np.float32))
    assert kept.indptr.tolist() == [0, 0, 0] and len(kept.indices) == 0


def test_codes_of_a_wider_sae_are_refused() -> None:
    codes = SparseCodes.from_rows([[9]], [[1.0]])
    with pytest.raises(PresenceThresholdsError, match="another SAE"):
        filter_codes(codes, np.ones(4, np.float32))


# --- calibration --------------------------------------------------------------------------


def test_feature_quantiles_match_numpy_percentiles() -> None:
    rng = np.random.default_rng(2)
    features = rng.integers(0, 50, size=20_000)
    features[features == 7] = 8  # feature 7 never active
    values = rng.gamma(2.0, 1.5, size=len(features)).astype(np.float32)
    q = feature_quantiles(features, values, d_sae=50, quantile=0.999, min_count=300)
    for j in range(50):
        mine = values[features == j]
        if len(mine) == 0:
            assert np.isnan(q[j])
        elif len(mine) < 300:
            assert q[j] == pytest.approx(float(mine.max()))
        else:
            assert q[j] == pytest.approx(float(np.percentile(mine.astype(np.float64), 99.9)))
    assert np.isnan(q[7]) and np.sum(np.isnan(q)) == 1


def test_fit_thresholds_by_the_rule_on_synthetic_activations() -> None:
    rng = np.random.default_rng(3)
    d_sae, n_docs = 40, 101
    codes = _random_codes(rng, n_docs, d_sae)
    features = rng.integers(0, d_sae - 1, size=30_000)  # feature 39 is never active
    values = rng.gamma(2.0, 1.0, size=len(features)).astype(np.float32)
    data = CorpusActivations({"response": codes}, features, values)
    thresholds = fit_thresholds(data, d_sae, target=5.0, quantile=0.99, min_count=10)
    info = thresholds.info
    assert info.median_present == 5.0 and info.unseen_features == 1 and info.documents == n_docs
    assert float(np.median(present_counts(codes, thresholds.values))) == 5.0
    q = np.array([np.percentile(values[features == j].astype(np.float64), 99) for j in range(39)])
    assert info.rho is not None
    np.testing.assert_allclose(thresholds.values[:39], info.rho * q, rtol=1e-5)
    # The never-active feature gets the median of the others' thresholds.
    assert thresholds.values[39] == pytest.approx(float(np.median(thresholds.values[:39])),
                                                  rel=1e-5)
    # Over prompts and responses together by default; over one field's documents on request.
    prompts = _random_codes(rng, 60, d_sae)
    both = CorpusActivations({"prompt": prompts, "response": codes}, features, values)
    together = fit_thresholds(both, d_sae, target=5.0, quantile=0.99, min_count=10)
    assert together.info.fit_fields == ("prompt", "response")
    assert together.info.documents == 60 + n_docs
    assert float(np.median(present_counts(both.all_codes(), together.values))) == 5.0
    alone = fit_thresholds(both, d_sae, target=5.0, quantile=0.99, min_count=10,
                           fit_fields=["response"])
    assert alone.info.fit_fields == ("response",) and alone.info.documents == n_docs
    np.testing.assert_array_equal(alone.values, thresholds.values)


def _corpus(n: int = 24) -> dict[str, list[str]]:
    events = alpaca_events("claude-2.1", limit=n)
    return {"prompt": [e.prompt for e in events], "response": [e.response for e in events]}


def test_calibration_reaches_its_target_and_the_encoder_agrees(
    make_encoder: Callable[..., SAEEncoder], tokenizer: PreTrainedTokenizerBase,
) -> None:
    encoder = make_encoder(max_tokens_per_text=48)
    texts = _corpus()
    result = calibrate(encoder, texts, target=10.0, corpus="sample")
    thresholds, data = result.thresholds, result.corpus
    info = thresholds.info
    assert info.median_present is not None and abs(info.median_present - 10.0) <= 1.0
    assert info.documents == 48 and info.max_tokens_per_text == 48 and info.corpus == "sample"
    assert info.rho is not None and 0 < info.rho < 1.5
    unfiltered = present_counts(data.all_codes())
    assert np.median(unfiltered) > 30  # without them a document keeps far more
    assert info.unseen_features == int(np.sum(np.bincount(data.features, minlength=D_SAE) == 0))
    # The same texts through an encoder applying them: the same codes as the filter.
    applying = SAEEncoder(encoder.reader, encoder.sae, "tiny/presence", presence=thresholds,
                          sanity_tokens=0)
    for field, items in texts.items():
        kept = applying.encode_texts(items, field)  # type: ignore[arg-type]
        assert _rows(kept) == _rows(thresholds.apply(data.codes[field]))  # type: ignore[index]
    together = SparseCodes.concat([applying.encode_texts(texts[f], f)  # type: ignore[arg-type]
                                   for f in ("prompt", "response")])
    assert float(np.median(present_counts(together))) == info.median_present


def test_calibration_refuses_an_unreachable_target(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder(max_tokens_per_text=16)
    with pytest.raises(PresenceThresholdsError, match="ask for fewer"):
        calibrate(encoder, _corpus(4), target=10_000.0)


def test_calibration_needs_codes_without_thresholds(
    make_encoder: Callable[..., SAEEncoder],
) -> None:
    encoder = make_encoder()
    encoder.presence = PresenceThresholds(np.ones(D_SAE))
    with pytest.raises(PresenceThresholdsError, match="presence_thresholds: none"):
        calibrate(encoder, _corpus(2))


# --- the encoder applying them ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), HOOK)


def _encoder(tokenizer: PreTrainedTokenizerBase, sae_dir: Path, **settings: object) -> SAEEncoder:
    import torch

    loaded = load_sae(SaeRef(path=sae_dir), torch.device("cpu"))
    model = make_tiny_llama(len(tokenizer))
    return SAEEncoder.from_parts(model, tokenizer, loaded, EncodeSettings(
        device="cpu", precision="fp32", max_tokens_per_text=32, **settings), "tiny")


def _write_thresholds(directory: Path, value: float) -> PresenceThresholds:
    thresholds = PresenceThresholds(np.linspace(value / 2, 2 * value, D_SAE))
    thresholds.save(directory / PRESENCE_FILE)
    return thresholds


def test_auto_applies_the_file_beside_the_sae_and_changes_the_id(
    tmp_path: Path, tiny_dirs: tuple[Path, Path], tokenizer: PreTrainedTokenizerBase,
) -> None:
    _, shipped = tiny_dirs
    sae_dir = tmp_path / "sae"
    sae_dir.mkdir()
    for name in ("cfg.json", "sae_weights.safetensors"):
        (sae_dir / name).write_bytes((shipped / name).read_bytes())
    without = _encoder(tokenizer, sae_dir)  # no file yet: auto = none
    assert without.presence is None and "/presence=" not in without.encoder_id
    texts = _corpus(6)["response"]
    reference = without.encode_texts(texts, "response")
    median = float(np.median(reference.values.astype(np.float32)))
    thresholds = _write_thresholds(sae_dir, median)

    auto = _encoder(tokenizer, sae_dir)
    assert auto.presence is not None and auto.presence.digest == thresholds.digest
    assert auto.encoder_id == f"{without.encoder_id}/presence={thresholds.digest}"
    kept = auto.encode_texts(texts, "response")
    assert _rows(kept) == _rows(thresholds.apply(reference))
    assert 0 < len(kept.indices) < len(reference.indices)
    # encode, encode_stream and the benchmarks' per-batch path give the same codes.
    events = alpaca_events("claude-2.1", limit=6)
    batch = auto.encode(events)
    assert batch.encoder_id == auto.encoder_id and _rows(batch.response) == _rows(kept)
    streamed = list(auto.encode_stream([events[:3], events[3:]]))
    assert _rows(SparseCodes.concat([b.response for b in streamed])) == _rows(kept)
    docs = auto.reader.tokenize(texts, "response")
    for tokens in auto.reader.iter_batches(docs):
        ids, rows = auto._pool(tokens)
        for doc, (indices, _) in zip(ids, rows, strict=True):
            assert indices.tolist() == kept.row(doc)[0].tolist()

    none = _encoder(tokenizer, sae_dir, presence_thresholds="none")
    assert none.presence is None and none.encoder_id == without.encoder_id
    assert _rows(none.encode_texts(texts, "response")) == _rows(reference)


def test_a_path_setting_loads_that_file_and_must_exist(
    tmp_path: Path, tiny_dirs: tuple[Path, Path], tokenizer: PreTrainedTokenizerBase,
) -> None:
    _, sae_dir = tiny_dirs
    thresholds = _write_thresholds(tmp_path, 1.0)
    encoder = _encoder(tokenizer, sae_dir, presence_thresholds=tmp_path / PRESENCE_FILE)
    assert encoder.presence is not None and encoder.presence.digest == thresholds.digest
    assert encoder.encoder_id.endswith(f"/presence={thresholds.digest}")
    with pytest.raises(PresenceThresholdsError, match="cannot read"):
        _encoder(tokenizer, sae_dir, presence_thresholds=tmp_path / "missing.json")
    PresenceThresholds(np.ones(D_SAE // 2)).save(tmp_path / "short.json")
    with pytest.raises(PresenceThresholdsError, match="another SAE"):
        _encoder(tokenizer, sae_dir, presence_thresholds=tmp_path / "short.json")


def test_the_command_writes_the_file_the_encoder_then_finds(
    tmp_path: Path, tiny_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir, shipped = tiny_dirs
    sae_dir = tmp_path / "sae"
    sae_dir.mkdir()
    for name in ("cfg.json", "sae_weights.safetensors"):
        (sae_dir / name).write_bytes((shipped / name).read_bytes())
    corpus = tmp_path / "events.jsonl"
    corpus.write_text("".join(e.model_dump_json() + "\n"
                              for e in alpaca_events("claude-2.1", limit=20)))
    for key, value in {"MODEL": str(model_dir), "DEVICE": "cpu", "PRECISION": "fp32",
                       "MAX_TOKENS_PER_TEXT": "32", "SANITY_TOKENS": "0"}.items():
        monkeypatch.setenv(f"SAEWATCH_ENCODE__{key}", value)
    code = main(["calibrate-thresholds", "--sae", str(sae_dir), "--corpus", str(corpus),
                 "--target-present", "8"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["output"] == str(sae_dir / PRESENCE_FILE) and result["events"] == 20
    assert abs(result["info"]["median_present"] - 8) <= 1
    assert result["info"]["corpus"] == "events.jsonl, 20 events"
    present = result["present_per_document"]
    assert present["response"]["with"]["median"] < present["response"]["without"]["median"]
    assert present["prompt"]["with"]["documents"] == 20
    settings = EncodeSettings(model=str(model_dir), sae=SaeRef(path=sae_dir), device="cpu",
                              precision="fp32", max_tokens_per_text=32)
    encoder = SAEEncoder.from_settings(settings)
    assert encoder.encoder_id.endswith(f"/presence={result['digest']}")
