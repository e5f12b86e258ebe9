"""Which layer to read: a linear probe on mean-pooled residual streams of every layer.

Responses of six AlpacaEval models (verbose/concise GPT-4, Claude 2.1, Llama-2-70B, Qwen2,
NullModel) are encoded by the default model (bf16 autocast, one full forward with all hidden
states); for each layer a ridge-regularised softmax probe predicts the model from the
mean-pooled text-token activations (half for fitting, half for testing). Usefulness that stays
flat across layers means the earliest layer in the flat band gives the same signal for the
least compute (cost grows linearly with the layers run).

    python -m benchmarks.perf.layer_probe --per-model 60
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from saewatch.datasets import read_alpaca
from saewatch.encode.model import base_model_of, load_language_model
from saewatch.encode.text import TextTokenizer

logger = logging.getLogger("benchmarks.perf.layer_probe")

MODELS = (
    "gpt4_1106_preview_verbose",
    "gpt4_1106_preview_concise",
    "claude-2.1",
    "llama-2-70b-chat-hf",
    "NullModel",
    "Qwen2-72B-Instruct",
)


def pooled_hidden_states(texts: list[str], max_tokens: int, batch: int) -> dict[int, np.ndarray]:
    """Mean-pooled text-token activations of every layer output: ``{layer: [n, d]}``."""
    model, tokenizer = load_language_model(None)
    base = base_model_of(model)
    docs = TextTokenizer(tokenizer, max_tokens, True).tokenize(texts, "response")
    feats: dict[int, list[np.ndarray]] = {}
    for s in range(0, len(docs), batch):
        chunk = docs[s : s + batch]
        width = max(len(d.ids) for d in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        attn = torch.zeros_like(ids)
        text = torch.zeros(len(chunk), width, 1)
        for i, d in enumerate(chunk):
            ids[i, : len(d.ids)] = torch.tensor(d.ids)
            attn[i, : len(d.ids)] = 1
            text[i, d.start : len(d.ids)] = 1
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            hs = base(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states
        # hidden_states[L + 1] is the output of layer L; the last one is normed, so skip it.
        for layer in range(len(hs) - 2):
            pooled = (hs[layer + 1].float() * text).sum(1) / text.sum(1)
            feats.setdefault(layer, []).append(pooled.numpy())
    return {layer: np.concatenate(v) for layer, v in feats.items()}


def probe_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Test accuracy of a ridge-regularised softmax regression (LBFGS) fit on ``train``."""
    xt = torch.tensor(x)
    mu, sd = xt[train].mean(0), xt[train].std(0) + 1e-6
    xt = (xt - mu) / sd
    yt = torch.tensor(y)
    w = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    b = torch.zeros(int(y.max()) + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt[train] @ w + b, yt[train])
        loss = loss + 1e-2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(((xt[test] @ w + b).argmax(1) == yt[test]).float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-model", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    texts, labels = [], []
    for k, name in enumerate(MODELS):
        rows = read_alpaca(name)[: args.per_model]
        texts += [r.output for r in rows]
        labels += [k] * len(rows)
    started = time.monotonic()
    feats = pooled_hidden_states(texts, args.max_tokens, args.batch)
    logger.info("forward of %d texts: %.0f s", len(texts), time.monotonic() - started)
    y = np.asarray(labels)
    perm = np.random.default_rng(0).permutation(len(y))
    train, test = perm[: len(y) // 2], perm[len(y) // 2 :]
    for layer, x in sorted(feats.items()):
        acc = probe_accuracy(x, y, train, test)
        logger.info("blocks.%d.hook_resid_post: probe accuracy %.3f", layer, acc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
