"""Which streaming clusterer for SAE codes: quality and learn speed, side by side in one run.

Every option sees the same stream of document codes (binarized) in the same order:

* ``kmeans-raw``: river ``KMeans`` on raw sparse dicts (``{feature: 1.0}``), the naive choice;
* ``kmeans-proj``: river ``KMeans`` on a seeded Gaussian projection to ``--dims``, river's own
  random initialisation;
* ``ours-pca-*``: :class:`~saewatch.state.clusters.StreamingClusters` (IDF-weighted PCA basis and
  k-means++ centres from the first 2,000 documents, then river ``KMeans`` on 1 in 256, every
  document assigned), at 32/48/64 dims; ``ours-random-48``: the same with a random projection;
* ``dbstream-proj`` and ``streamkmeans-proj``: river ``DBSTREAM`` / ``STREAMKMeans`` on the
  random projection; ``kmeans-pca``, ``dbstream-pca``, ``streamkmeans-pca``: river's clusterers,
  learning every document, on the same PCA view as ours (learnt from the first 2,000 documents).

Quality: adjusted Rand index (ARI) against offline k-means (k-means++ and Lloyd, numpy) on the
full binarized, L2-normalised codes, and purity of the clusters with respect to the model that
wrote each response (real codes only; ``--codes`` npz with ``labels``). Speed: documents learnt per
second (river's ``learn_one`` per document, or ``StreamingClusters.update`` per batch of 256 after
its warm-up, whose one-off cost is reported apart); the median of ``--runs`` runs. Without ``--codes`` a synthetic stream of
topic mixtures over heavy-tailed features is used.

    python -m benchmarks.perf.clusters --codes ~/.cache/saewatch/codes/<encoder>/bench.npz
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, one BLAS thread; must precede numpy's import

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from river.cluster import DBSTREAM, KMeans, STREAMKMeans  # noqa: E402

from saewatch.state.clusters import StreamingClusters, _kmeans  # noqa: E402
from saewatch.state.projection import learn_basis, project  # noqa: E402
from saewatch.state.testing import make_batch  # noqa: E402

logger = logging.getLogger("benchmarks.perf.clusters")


def synthetic(n: int, d: int, topics: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Documents mixing 30 common features with 40 of their topic's 300."""
    rng = np.random.default_rng(seed)
    common = np.arange(200)
    pools = [np.arange(200 + 300 * t, 500 + 300 * t) for t in range(topics)]
    labels = rng.integers(0, topics, n)
    rows = [
        np.unique(
            np.concatenate(
                [rng.choice(common, 30, replace=False), rng.choice(pools[t], 40, replace=False)]
            )
        )
        for t in labels
    ]
    return rows, labels, d


def real(path: Path) -> tuple[list[np.ndarray], np.ndarray, int]:
    data = np.load(path)
    indptr, indices = data["indptr"], data["indices"]
    rows = [indices[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]
    order = np.random.default_rng(0).permutation(len(rows))  # interleave the models
    return [rows[i] for i in order], data["labels"][order], int(data["d_sae"])


def ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([len(a)]))
    top = (rows + cols) / 2
    return (index - expected) / (top - expected) if top != expected else 1.0


def purity(assigned: np.ndarray, labels: np.ndarray) -> float:
    return sum(np.bincount(labels[assigned == c]).max() for c in np.unique(assigned)) / len(labels)


def offline(rows: list[np.ndarray], d: int, k: int) -> np.ndarray:
    dense = np.zeros((len(rows), d), dtype=np.float32)
    for i, r in enumerate(rows):
        dense[i, r] = 1.0 / np.sqrt(max(len(r), 1))
    centres = _kmeans(dense, k, seed=0)
    return np.argmin(((dense[:, None, :] - centres[None]) ** 2).sum(2), axis=1)


def river_option(
    model_factory: Callable[[], object], xs: list[dict]
) -> tuple[np.ndarray, float, float]:
    model = model_factory()
    start = time.perf_counter()
    for x in xs:
        model.learn_one(x)  # type: ignore[attr-defined]
    rate = len(xs) / (time.perf_counter() - start)
    return np.array([model.predict_one(x) for x in xs]), rate, 0.0  # type: ignore[attr-defined]


def ours(
    rows: list[np.ndarray], d: int, k: int, dims: int, projection: str = "pca"
) -> tuple[np.ndarray, float, float]:
    """Assignments, steady-state documents/s after the warm-up, and the warm-up's seconds."""
    cl = StreamingClusters(d_sae=d, n_clusters=k, dims=dims, seed=0, projection=projection)  # type: ignore[arg-type]
    batches = [
        make_batch([r.tolist() for r in rows[i : i + 256]], d, start=i)
        for i in range(0, len(rows), 256)
    ]
    warm = -(-cl.warmup // 256)
    start = time.perf_counter()
    for b in batches[:warm]:
        cl.update(b)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for b in batches[warm:]:
        cl.update(b)
    rate = sum(len(b) for b in batches[warm:]) / max(time.perf_counter() - start, 1e-9)
    whole = make_batch([r.tolist() for r in rows], d)
    return cl.assign(cl.project(whole.response.indptr, whole.response.indices)), rate, warm_s


def run(
    rows: list[np.ndarray],
    labels: np.ndarray,
    d: int,
    k: int,
    runs: int,
    real_labels: bool,
    raw_limit: int,
) -> dict:
    reference = offline(rows, d, k)
    proj = np.random.default_rng(0).standard_normal((d, 48)).astype(np.float32)
    xp = [dict(enumerate((proj[r].sum(0) / np.sqrt(max(len(r), 1))).tolist())) for r in rows]
    options: dict[str, Callable[[], tuple[np.ndarray, float, float]]] = {
        f"ours-pca-{dims}": (lambda dims=dims: ours(rows, d, k, dims)) for dims in (32, 48, 64)
    }
    options["ours-random-48"] = lambda: ours(rows, d, k, 48, "random")
    options["kmeans-proj"] = lambda: river_option(lambda: KMeans(k, halflife=0.05, seed=0), xp)
    options["dbstream-proj"] = lambda: river_option(
        lambda: DBSTREAM(clustering_threshold=4.0, cleanup_interval=100), xp
    )
    options["streamkmeans-proj"] = lambda: river_option(
        lambda: STREAMKMeans(chunk_size=100, n_clusters=k, seed=0), xp
    )
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    flat = np.concatenate(rows).astype(np.int64)
    w, basis = learn_basis(ptr[:2001], flat[: ptr[min(2000, len(rows))]], d, 48, 0)
    xpca = [dict(enumerate(v.tolist())) for v in project(ptr, flat, w, basis)]
    options["kmeans-pca"] = lambda: river_option(lambda: KMeans(k, halflife=0.05, seed=0), xpca)
    options["dbstream-pca"] = lambda: river_option(
        lambda: DBSTREAM(clustering_threshold=0.3, cleanup_interval=100), xpca)  # best of 0.05-0.5
    options["streamkmeans-pca"] = lambda: river_option(
        lambda: STREAMKMeans(chunk_size=100, n_clusters=k, seed=0), xpca)
    raw = [{int(f): 1.0 for f in r} for r in rows[:raw_limit]]
    options["kmeans-raw"] = lambda: river_option(lambda: KMeans(k, halflife=0.05, seed=0), raw)
    out = {}
    for name, fn in options.items():
        results = [fn() for _ in range(runs if name != "kmeans-raw" else 1)]
        assigned = results[0][0]
        n = len(assigned)
        out[name] = {
            "learn_per_s": round(statistics.median(r[1] for r in results)),
            "warmup_s": round(statistics.median(r[2] for r in results), 2),
            "ari_vs_offline": round(ari(assigned, reference[:n]), 3),
            "clusters_used": int(len(np.unique(assigned))),
        }
        if real_labels:
            out[name]["purity_by_model"] = round(purity(assigned, labels[:n]), 3)
        logger.info("%s: %s", name, out[name])
    out["offline-kmeans"] = (
        {"purity_by_model": round(purity(reference, labels), 3)} if real_labels else {}
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codes", type=Path, default=None)
    p.add_argument("--n", type=int, default=6000)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--raw-limit", type=int, default=600)
    args = p.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    rows, labels, d = real(args.codes) if args.codes else synthetic(args.n, 4096, args.k, 0)
    result = run(rows, labels, d, args.k, args.runs, args.codes is not None, args.raw_limit)
    sys.stdout.write(
        json.dumps({"documents": len(rows), "d_sae": d, "k": args.k, "options": result}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
