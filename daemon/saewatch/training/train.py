"""Training a TopK SAE (sae-lens classes) on hook activations of the encoder's own pipeline.

Activations come from :class:`~saewatch.encode.reader.ActivationReader`, so the SAE sees
exactly the tokens the encoder will pool (template, BOS and padding excluded). Inputs are
scaled to an average norm of ``sqrt(d_in)`` while training (so learning rates do not depend on
the model's residual scale) and the scale is folded into the saved weights: the saved SAE takes
raw activations, ``normalize_activations="none"``, and loads with ``SAE.load_from_disk``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sae_lens import SAE, TopKSAE, TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import SAEMetadata
from torch.nn import functional as F

from saewatch.encode.exceptions import TrainingError
from saewatch.encode.reader import ActivationReader, resolve_device
from saewatch.models import TextField

logger = logging.getLogger(__name__)

# A feature that has not fired for this many training tokens counts as dead and gets the
# TopK auxiliary loss (the AuxK heuristic of Gao et al. 2024 uses a window of ~10M tokens;
# our runs see ~1M tokens, so the window is scaled down).
DEAD_AFTER_TOKENS = 200_000
# Texts tokenized and forwarded per step of extraction: big enough for length bucketing,
# small enough not to overshoot the token target by much.
EXTRACT_CHUNK = 64
# Seconds of training between checkpoints: an interruption loses at most this much.
CHECKPOINT_EVERY_S = 120.0


@dataclass
class ActivationSet:
    """Hook activations of text tokens with their token ids and source documents."""

    acts: np.ndarray  # [n, d_in] float16
    token_ids: np.ndarray  # [n] int32
    doc_ids: np.ndarray  # [n] int32, index into ``texts``
    texts: list[str]

    def save(self, path: Path) -> None:
        np.savez(
            path,
            acts=self.acts,
            token_ids=self.token_ids,
            doc_ids=self.doc_ids,
            texts=np.asarray(self.texts, dtype=object),
        )

    def head(self, n: int) -> ActivationSet:
        """The first ``n`` tokens (whole documents before the cut, one partial at most)."""
        return ActivationSet(self.acts[:n], self.token_ids[:n], self.doc_ids[:n], self.texts)

    @classmethod
    def load(cls, path: Path) -> ActivationSet:
        data = np.load(path, allow_pickle=True)
        return cls(data["acts"], data["token_ids"], data["doc_ids"], list(data["texts"]))


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train_topk_sae`."""

    d_sae: int = 4096
    k: int = 32
    batch_size: int = 4096
    epochs: float = 2.0
    lr: float = 4e-4
    warmup_steps: int = 50
    aux_loss_coefficient: float = 1.0 / 32
    seed: int = 0


def extract_activations(
    reader: ActivationReader,
    texts: Sequence[tuple[str, TextField]],
    max_tokens: int,
    progress: Callable[[int, int], None] | None = None,
) -> ActivationSet:
    """Read hook activations of ``texts`` (in the given order) until ``max_tokens`` tokens."""
    acts = read_activations(reader, texts, 0, max_tokens, progress)
    if len(acts.acts) == 0:
        raise TrainingError("no tokens to train on: the corpus is empty")
    return acts


def read_activations(
    reader: ActivationReader,
    texts: Sequence[tuple[str, TextField]],
    offset: int,
    budget: int,
    progress: Callable[[int, int], None] | None = None,
) -> ActivationSet:
    """Activations of ``texts`` until ``budget`` tokens, document ids counted from ``offset``.

    ``texts`` of the result are the ones read (a prefix of ``texts``, whole chunks of
    :data:`EXTRACT_CHUNK`).
    """
    acts: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    docs: list[np.ndarray] = []
    total = used = 0
    for start in range(0, len(texts), EXTRACT_CHUNK):
        chunk = texts[start : start + EXTRACT_CHUNK]
        tokenized = [reader.tokenize([t], f)[0] for t, f in chunk]
        for batch in reader.iter_batches(tokenized):
            acts.append(batch.acts.to(torch.float16).cpu().numpy())
            tokens.append(batch.token_ids.cpu().numpy().astype(np.int32))
            local = batch.doc_index.cpu().numpy()
            docs.append((np.asarray(batch.docs)[local] + offset + start).astype(np.int32))
            total += len(local)
        used = start + len(chunk)
        if progress is not None:
            progress(total, budget)
        if total >= budget:
            break
    width = reader.d_model
    return ActivationSet(
        np.concatenate(acts) if acts else np.empty((0, width), np.float16),
        np.concatenate(tokens) if tokens else np.empty(0, np.int32),
        np.concatenate(docs) if docs else np.empty(0, np.int32),
        [t for t, _ in texts[:used]],
    )


def train_topk_sae(
    acts: np.ndarray,
    config: TrainConfig,
    metadata: dict[str, object],
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    checkpoint: Path | None = None,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    device: str = "auto",
) -> TopKSAE:
    """Train a TopK SAE on ``acts`` ``[n, d_in]`` and return the inference SAE (raw inputs).

    ``metadata`` goes into ``cfg.json`` (it must name ``hook_name`` and ``model_name``).
    With ``checkpoint``, the whole training state (weights, Adam moments, schedule, dead-feature
    clocks, data order and position) is saved there every ``checkpoint_every_s`` seconds and
    at the end; a run that finds a checkpoint of the same config and data size continues from
    it, so an interrupted run loses at most ``checkpoint_every_s`` of work and ends where an
    uninterrupted one would. ``device``: ``auto`` trains on CUDA when there is one (the
    activations stay in host memory; each batch is copied over), else on the CPU; the returned
    SAE is on the CPU either way.
    """
    if "hook_name" not in metadata:
        raise TrainingError("SAE metadata needs hook_name (e.g. blocks.12.hook_resid_post)")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = torch.from_numpy(acts)
    scale = math.sqrt(acts.shape[1]) / float(data[:100_000].float().norm(dim=1).mean())
    on = resolve_device(device)
    sae = _new_training_sae(acts.shape[1], config, metadata).to(on)
    with torch.no_grad():
        sae.b_dec.data = (data[:100_000].float() * scale).mean(0).to(on)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=(0.9, 0.999))
    n_steps = max(1, int(config.epochs * len(data) / config.batch_size))
    schedule = _lr_schedule(n_steps, config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    since_fired = torch.zeros(config.d_sae, dtype=torch.long, device=on)
    order = rng.permutation(len(data))
    cursor = first = 0
    identity = {"config": asdict(config), "n": len(data), "d_in": int(acts.shape[1])}
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False, map_location=on)
        if saved["identity"] != identity:
            raise TrainingError(
                f"{checkpoint} belongs to another training run ({saved['identity']}); delete "
                "it to start afresh"
            )
        sae.load_state_dict(saved["sae"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        since_fired, order, cursor = saved["since_fired"], saved["order"], saved["cursor"]
        scale, first = saved["scale"], saved["step"]
        rng.bit_generator.state = saved["rng"]
        logger.info("resuming training from %s at step %d of %d", checkpoint, first, n_steps)

    def save(step: int) -> None:
        if checkpoint is None:
            return
        state = {
            "identity": identity, "sae": sae.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "since_fired": since_fired, "order": order,
            "cursor": cursor, "scale": scale, "step": step, "rng": rng.bit_generator.state,
        }
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, checkpoint)  # a crash mid-write leaves the previous checkpoint

    last_saved = time.monotonic()
    for step in range(first, n_steps):
        if cursor + config.batch_size > len(order):
            order, cursor = rng.permutation(len(data)), 0
        idx = torch.from_numpy(order[cursor : cursor + config.batch_size])
        cursor += config.batch_size
        x = data[idx].to(on, non_blocking=True).float() * scale
        loss, mse, fired = topk_step_loss(sae, x, since_fired > DEAD_AFTER_TOKENS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        since_fired += len(x)
        since_fired[fired] = 0
        if progress is not None and (step % 20 == 0 or step == n_steps - 1):
            fve = 1.0 - float(mse) / float((x - x.mean(0)).pow(2).sum(-1).mean())
            dead = float((since_fired > DEAD_AFTER_TOKENS).float().mean())
            progress(step + 1, n_steps, {"fve": fve, "dead": dead, "loss": float(loss.detach())})
        if time.monotonic() - last_saved > checkpoint_every_s:
            save(step + 1)
            last_saved = time.monotonic()
    save(n_steps)
    return _to_inference(sae.to("cpu"), scale)


def topk_step_loss(
    sae: TopKTrainingSAE, x: torch.Tensor, dead: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of sae-lens' ``TopKTrainingSAE.training_forward_pass``, computed sparsely.

    sae-lens decodes with a dense ``[batch, d_sae] @ [d_sae, d_in]`` product although only
    ``k`` latents per row are non-zero; ``embedding_bag`` over the top-k indices gives the same
    reconstruction (and AuxK loss) at a fraction of the cost, which matters on a CPU. Returns
    the total loss, the MSE part (both scalars) and which latents fired in the batch.
    """
    cfg = sae.cfg
    norms = sae.W_dec.norm(dim=-1)
    hidden_pre = (x - sae.b_dec * cfg.apply_b_dec_to_input) @ sae.W_enc + sae.b_enc
    if cfg.rescale_acts_by_decoder_norm:
        hidden_pre = hidden_pre * norms
    values, indices = hidden_pre.topk(cfg.k, dim=-1, sorted=False)
    values = values.relu()
    decoder = sae.W_dec / norms.unsqueeze(1) if cfg.rescale_acts_by_decoder_norm else sae.W_dec
    recon = F.embedding_bag(indices, decoder, per_sample_weights=values, mode="sum") + sae.b_dec
    mse = (recon - x).pow(2).sum(-1).mean()
    loss = mse
    n_dead = int(dead.sum())
    if n_dead > 0:
        # AuxK (Gao et al. 2024), as in sae-lens: the top dead latents model the residual.
        k_aux = min(x.shape[-1] // 2, n_dead)
        scale = min(n_dead / (x.shape[-1] // 2), 1.0)
        masked = torch.where(dead[None], hidden_pre, -torch.inf)
        aux_values, aux_indices = masked.topk(k_aux, dim=-1, sorted=False)
        aux_recon = F.embedding_bag(aux_indices, decoder, per_sample_weights=aux_values, mode="sum")
        residual = (x - recon).detach()
        aux = (aux_recon - residual).pow(2).sum(-1).mean()
        loss = loss + cfg.aux_loss_coefficient * scale * aux
    fired = torch.zeros(cfg.d_sae, dtype=torch.bool, device=x.device)
    fired[indices[values.detach() > 0]] = True
    return loss, mse.detach(), fired


def _new_training_sae(
    d_in: int, config: TrainConfig, metadata: dict[str, object]
) -> TopKTrainingSAE:
    cfg = TopKTrainingSAEConfig(
        d_in=d_in,
        d_sae=config.d_sae,
        k=config.k,
        dtype="float32",
        device="cpu",
        apply_b_dec_to_input=True,
        normalize_activations="none",
        aux_loss_coefficient=config.aux_loss_coefficient,
        rescale_acts_by_decoder_norm=True,
        metadata=SAEMetadata(**metadata),
    )
    return TopKTrainingSAE(cfg)


def _lr_schedule(n_steps: int, warmup: int) -> Callable[[int], float]:
    decay_from = int(0.8 * n_steps)  # linear decay to 0 over the last 20%

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step >= decay_from:
            return max(0.0, (n_steps - step) / max(1, n_steps - decay_from))
        return 1.0

    return factor


@torch.no_grad()
def _to_inference(sae: TopKTrainingSAE, scale: float) -> TopKSAE:
    """Inference SAE taking raw activations: decoder norms and the input scale folded in."""
    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(state)  # unit-norm decoder rows
    cfg_dict = sae.cfg.get_inference_sae_cfg_dict()
    cfg_dict["rescale_acts_by_decoder_norm"] = False  # rows have unit norm after the fold
    cfg_dict["device"] = "cpu"  # trained on CUDA or not, the saved SAE loads anywhere
    inference = TopKSAE(TopKSAE.get_sae_config_class_for_architecture("topk").from_dict(cfg_dict))
    inference.load_state_dict(state)
    # encode(s*x): (s*x - b) W + c = (x - b/s)(s W) + c;  decode: (f D + b) / s.
    inference.W_enc.mul_(scale)
    inference.W_dec.div_(scale)
    inference.b_dec.div_(scale)
    return inference.eval()


@dataclass(frozen=True)
class SaeEvaluation:
    """Held-out quality of an SAE."""

    tokens: int
    fve: float  # 1 - SSE / total variance around the mean
    mean_l0: float
    dead_share: float  # features that never fired on these tokens
    mse: float


@torch.no_grad()
def evaluate_sae(sae: SAE, acts: np.ndarray, chunk: int = 8192) -> SaeEvaluation:
    """FVE, mean L0 and dead-feature share of ``sae`` on ``acts``."""
    sse = sst_sum = sumsq = l0 = 0.0
    total = torch.zeros(acts.shape[1], dtype=torch.float64)
    ever = torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool)
    for start in range(0, len(acts), chunk):
        x = torch.from_numpy(acts[start : start + chunk]).float()
        feats = sae.encode(x)
        sse += float((sae.decode(feats) - x).double().pow(2).sum())
        sumsq += float(x.double().pow(2).sum())
        total += x.double().sum(0)
        l0 += float((feats > 0).sum())
        ever |= (feats > 0).any(0)
    n = len(acts)
    sst_sum = sumsq - float(total.pow(2).sum()) / n
    return SaeEvaluation(
        tokens=n,
        fve=1.0 - sse / sst_sum,
        mean_l0=l0 / n,
        dead_share=float((~ever).float().mean()),
        mse=sse / n,
    )


def save_sae_fp16(sae: SAE, directory: Path) -> None:
    """Save with ``save_model`` in float16 (half the size; loads back as float32)."""
    started = time.monotonic()
    sae.to(dtype=torch.float16)
    sae.save_model(directory)
    sae.to(dtype=torch.float32)
    logger.info("saved SAE to %s in %.1f s", directory, time.monotonic() - started)
