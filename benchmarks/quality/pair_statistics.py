"""Is a version pair separable at all? Several per-document statistics of token-level SAE codes.

The daemon's diff counts documents in which a feature fired anywhere (max-pool, threshold). When a
pair shows no significant feature, this probe asks whether *any* per-document statistic of the
same SAE would have shown one, so that "no diff" can be told apart from "the statistic is blind":

* ``any``: fired on at least one token (the daemon's document code);
* ``count>=m``: fired on at least m tokens;
* ``share>=s``: fired on at least a share s of the document's tokens (length-normalised);
* ``share (welch)``: the share of tokens as a number per document, Welch z-test;
* ``max>t``: max-pooled activation above a global threshold t (``encode.threshold``).

Each is tested per feature (two-proportion z-test, or Welch for the share) with Benjamini-Hochberg
over all features; reported: significant features at q < 0.05 for baseline vs candidate (disjoint
random prompts) and for an A/A split of the baseline (two further disjoint halves), and the mean
number of active features per document. Token-level codes are computed here (not the daemon's
pooled ones), with the default encoder.

    python -m benchmarks.quality.pair_statistics --pair gpt4_1106_preview gpt4_1106_preview_verbose \\
        --per-side 120 --max-tokens 256
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from saewatch.config import EncodeSettings
from saewatch.datasets import read_alpaca
from saewatch.diff.stats import bh_qvalues, z_pvalues
from saewatch.encode.encoder import SAEEncoder

logger = logging.getLogger("benchmarks.quality.pair_statistics")

N_PROMPTS = 805  # AlpacaEval


def token_codes(encoder: SAEEncoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per document: tokens on which each feature fired, its max activation, and token counts."""
    docs = encoder.reader.tokenize(texts, "response")
    fired = np.zeros((len(texts), encoder.d_sae), np.float32)
    top = np.zeros((len(texts), encoder.d_sae), np.float32)

    def per_batch(batch):  # noqa: ANN001, ANN202 - a TokenBatch in, tensors out
        with torch.inference_mode():
            return batch.docs, encoder.sae.encode(batch.acts).float(), batch.doc_index

    for ids, feats, doc_index in encoder.reader.map_batches(docs, per_batch):
        for j, doc in enumerate(ids):
            mine = feats[doc_index == j]
            fired[doc] = (mine > 0).sum(0).numpy()
            top[doc] = mine.amax(0).numpy()
    return fired, top, np.array([d.n_tokens for d in docs])


def two_proportion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The diff stage's pooled z-test on per-document booleans ``[docs, features]``."""
    return z_pvalues(a.sum(0), len(a), b.sum(0), len(b))


def welch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    z = np.divide(b.mean(0) - a.mean(0), se, out=np.zeros_like(se), where=se > 0)
    return 2 * stats.norm.sf(np.abs(z))


Statistic = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def statistics() -> dict[str, tuple[Statistic, bool]]:
    """name -> (per-document values from (fired, top, n_tokens), is it binary)."""
    def share(f: np.ndarray, n: np.ndarray) -> np.ndarray:
        return f / np.maximum(n, 1)[:, None]

    out: dict[str, tuple[Statistic, bool]] = {"any": (lambda f, t, n: f > 0, True)}
    for m in (2, 5):
        out[f"count>={m}"] = (lambda f, t, n, m=m: f >= m, True)
    for s in (0.02, 0.05):
        out[f"share>={s}"] = (lambda f, t, n, s=s: share(f, n) >= s, True)
    out["share (welch)"] = (lambda f, t, n: share(f, n), False)
    for th in (1.0, 2.0, 3.0):
        out[f"max>{th:g}"] = (lambda f, t, n, th=th: t > th, True)
    return out


def probe(args: argparse.Namespace) -> dict[str, object]:
    baseline, candidate = args.pair
    perm = np.random.default_rng(args.seed).permutation(N_PROMPTS)
    n, sets = args.per_side, 2 if args.no_aa else 3
    if sets * n > N_PROMPTS:
        raise SystemExit(f"--per-side {n}: {sets} disjoint prompt sets need <= {N_PROMPTS // sets}")
    if args.no_aa:
        aa1, aa2, cand = perm[:n], perm[:0], perm[n:2 * n]
    else:
        aa1, aa2, cand = perm[:n], perm[n:2 * n], perm[2 * n:3 * n]
    encoder = SAEEncoder.from_settings(EncodeSettings(max_tokens_per_text=args.max_tokens))
    base_texts = [r.output for r in read_alpaca(baseline)]
    cand_texts = [r.output for r in read_alpaca(candidate)]
    a = token_codes(encoder, [base_texts[i] for i in np.concatenate([aa1, aa2])])
    b = token_codes(encoder, [cand_texts[i] for i in cand])
    rows: dict[str, dict[str, float | int | None]] = {}
    for name, (fn, binary) in statistics().items():
        xa, xb = fn(*a), fn(*b)
        test = two_proportion if binary else welch
        rows[name] = {
            "significant_vs_candidate": int((bh_qvalues(test(xa[:n], xb)) < 0.05).sum()),
            "significant_aa": (None if args.no_aa
                               else int((bh_qvalues(test(xa[:n], xa[n:])) < 0.05).sum())),
            "active_per_doc": round(float((xa > 0).sum(1).mean()), 1),
        }
    return {"pair": [baseline, candidate], "per_side": n, "max_tokens": args.max_tokens,
            "mean_tokens": [round(float(a[2].mean()), 1), round(float(b[2].mean()), 1)],
            "seed": args.seed, "statistics": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", nargs=2, default=["gpt4_1106_preview", "gpt4_1106_preview_verbose"])
    p.add_argument("--per-side", type=int, default=120)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-aa", action="store_true",
                   help="skip the A/A split (two prompt sets instead of three: up to 402 per side)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = probe(args)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
