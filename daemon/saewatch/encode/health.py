"""Sanity checks on the first batches: does the SAE reconstruct these activations as it should?

A wrong layer, a wrong model or a missing normalisation does not crash anything; it silently
produces meaningless features. The encoder therefore measures the SAE's fraction of variance
explained (FVE) and mean L0 on its first tokens and compares them with what the SAE's training
report (or its architecture) promises. The numbers stay available for metrics.

>>> import torch
>>> from saewatch.encode.sae import SaeExpectations
>>> check = SanityCheck(SaeExpectations(0.5, (1.0, 3.0), "test"), tokens_wanted=4)
>>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
>>> f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 1.0]])
>>> check.update(x, x * 0.9, f)
>>> h = check.health()
>>> h.done, round(h.fve, 2), h.mean_l0, h.warnings
(True, 0.98, 1.25, ())
"""

from __future__ import annotations

import logging

import torch

from saewatch.encode.base import EncoderHealth
from saewatch.encode.sae import SaeExpectations

logger = logging.getLogger(__name__)

# About 20 typical texts' worth of tokens: enough for a stable FVE, cheap to decode.
DEFAULT_SANITY_TOKENS = 4096


class SanityCheck:
    """Accumulates reconstruction error and L0 over the first ``tokens_wanted`` tokens."""

    def __init__(self, expectations: SaeExpectations, tokens_wanted: int = DEFAULT_SANITY_TOKENS):
        self.expectations = expectations
        self.tokens_wanted = tokens_wanted
        self._tokens = 0
        self._sse = 0.0
        self._sum = torch.zeros(0, dtype=torch.float64)
        self._sumsq = 0.0
        self._l0 = 0.0
        self._warnings: tuple[str, ...] = ()

    @property
    def wants_more(self) -> bool:
        return self._tokens < self.tokens_wanted

    def update(self, acts: torch.Tensor, recon: torch.Tensor, feats: torch.Tensor) -> None:
        """Add a batch: activations, their reconstructions and SAE feature activations."""
        if not self.wants_more or acts.shape[0] == 0:
            return
        x = acts.double().cpu()
        self._sse += float((x - recon.double().cpu()).pow(2).sum())
        self._sum = x.sum(0) if self._sum.numel() == 0 else self._sum + x.sum(0)
        self._sumsq += float(x.pow(2).sum())
        self._l0 += float((feats > 0).sum())
        self._tokens += x.shape[0]
        if not self.wants_more:
            health = self.health()
            self._warnings = self.expectations.check(health.fve or 0.0, health.mean_l0 or 0.0)
            for warning in self._warnings:
                logger.warning("encoder sanity check: %s", warning)
            logger.info(
                "encoder sanity check on %d tokens: FVE %.3f, mean L0 %.1f",
                self._tokens,
                health.fve,
                health.mean_l0,
            )

    def health(self) -> EncoderHealth:
        fve = l0 = None
        if self._tokens:
            # Total variance around the mean of all checked tokens (not per batch).
            sst = self._sumsq - float(self._sum.pow(2).sum()) / self._tokens
            fve = 1.0 - self._sse / sst if sst > 0 else 0.0
            l0 = self._l0 / self._tokens
        return EncoderHealth(
            tokens_checked=self._tokens,
            done=not self.wants_more,
            fve=fve,
            mean_l0=l0,
            expected_min_fve=self.expectations.min_fve,
            expected_l0_range=self.expectations.l0_range,
            warnings=self._warnings,
        )
