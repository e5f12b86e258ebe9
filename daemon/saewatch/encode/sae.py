"""Loading a sae-lens SAE, its identity and what the shipped training report expects of it.

``encode.sae.path`` loads a local sae-lens directory (``cfg.json`` + ``sae_weights.safetensors``)
with ``SAE.load_from_disk``; ``encode.sae.release`` + ``sae_id`` load a public release with
``SAE.from_pretrained``, which downloads from the Hugging Face hub (network needed, then cached
by huggingface_hub). With neither, the default SAE shipped in this package is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from sae_lens import SAE

from saewatch.config import SaeRef
from saewatch.encode.default import REPORT_FILE, default_sae_dir
from saewatch.encode.exceptions import SaeLoadError

logger = logging.getLogger(__name__)

# Hook activations of a sane setup reconstruct at least this well even without a report;
# below it the layer or normalisation is almost surely wrong.
GENERIC_MIN_FVE = 0.5


@dataclass(frozen=True)
class SaeExpectations:
    """What a healthy SAE should show on the first batches: FVE and mean L0 ranges.

    >>> e = SaeExpectations(min_fve=0.6, l0_range=(16.0, 64.0), source="report")
    >>> e.check(fve=0.7, mean_l0=32.0), len(e.check(fve=0.3, mean_l0=200.0))
    ((), 2)
    """

    min_fve: float
    l0_range: tuple[float, float] | None
    source: str

    def check(self, fve: float, mean_l0: float) -> tuple[str, ...]:
        """Warnings (empty when healthy) for measured FVE and mean L0."""
        problems = []
        if fve < self.min_fve:
            problems.append(
                f"SAE reconstruction explains {fve:.2f} of the variance, expected >= "
                f"{self.min_fve:.2f} ({self.source}): wrong layer, model or normalisation?"
            )
        if self.l0_range is not None and not self.l0_range[0] <= mean_l0 <= self.l0_range[1]:
            problems.append(
                f"mean L0 {mean_l0:.1f} outside the expected {self.l0_range[0]:.0f}-"
                f"{self.l0_range[1]:.0f} ({self.source}): features look wrong for this input"
            )
        return tuple(problems)


@dataclass(frozen=True)
class LoadedSae:
    """An SAE with the facts the encoder needs about it."""

    sae: SAE
    hook_name: str
    sae_id: str  # stable identity: release/id, or directory name + weights hash
    directory: Path | None
    expectations: SaeExpectations


def load_sae(ref: SaeRef | None, device: torch.device) -> LoadedSae:
    """Load the SAE named by ``ref`` (``None``: the shipped default) onto ``device``.

    Raises
    ------
    SaeLoadError
        When the files are missing or unreadable, or the SAE has no ``hook_name``.
    """
    if ref is not None and ref.release is not None:
        return _from_release(ref.release, ref.sae_id or "", device)
    directory = Path(ref.path) if ref is not None and ref.path is not None else default_sae_dir()
    if not (directory / "cfg.json").is_file():
        raise SaeLoadError(
            f"{directory} holds no sae-lens SAE (cfg.json + sae_weights.safetensors); "
            "train one with `saewatch train-sae` or point encode.sae.path at one"
        )
    try:
        sae = SAE.load_from_disk(directory, device=str(device), dtype="float32")
    except (OSError, KeyError, ValueError) as exc:
        raise SaeLoadError(f"cannot load the SAE in {directory}: {exc}") from exc
    weights = directory / "sae_weights.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:10]
    return LoadedSae(
        sae=sae.eval(),
        hook_name=_hook_name(sae),
        sae_id=f"{directory.name}:{sae.cfg.architecture()}-{sae.cfg.d_sae}-{digest}",
        directory=directory,
        expectations=expectations_for(sae, directory),
    )


def _from_release(release: str, sae_id: str, device: torch.device) -> LoadedSae:
    try:
        sae = SAE.from_pretrained(release, sae_id, device=str(device))
    except (OSError, KeyError, ValueError) as exc:
        raise SaeLoadError(
            f"cannot load SAE {release}/{sae_id} from the hub ({exc}); without network access "
            "download it elsewhere, save it with sae.save_model(DIR) and set encode.sae.path"
        ) from exc
    return LoadedSae(
        sae=sae.eval(),
        hook_name=_hook_name(sae),
        sae_id=f"{release}/{sae_id}",
        directory=None,
        expectations=expectations_for(sae, None),
    )


def _hook_name(sae: SAE) -> str:
    # SAEMetadata returns None for missing attributes instead of raising.
    name = sae.cfg.metadata.get("hook_name")
    if not name:
        raise SaeLoadError("the SAE's cfg.json has no metadata.hook_name; cannot tell its layer")
    return str(name)


def read_report(directory: Path | None) -> dict[str, object] | None:
    """The training report shipped beside an SAE (``training_report.json``), if any."""
    if directory is None or not (directory / REPORT_FILE).is_file():
        return None
    data = json.loads((directory / REPORT_FILE).read_text())
    return data if isinstance(data, dict) else None


def expectations_for(sae: SAE, directory: Path | None) -> SaeExpectations:
    """Expected ranges from the training report, else from the architecture (TopK: L0 = k)."""
    report = read_report(directory)
    held_out = report.get("held_out") if report else None
    if isinstance(held_out, dict) and "fve" in held_out and "mean_l0" in held_out:
        fve, l0 = float(held_out["fve"]), float(held_out["mean_l0"])
        # Other text than the held-out set shifts FVE a little; 0.15 absorbs that but not a
        # wrong layer (which drops FVE far below zero-ish values).
        return SaeExpectations(
            min_fve=max(fve - 0.15, 0.0), l0_range=(0.5 * l0, 2.0 * l0), source="training report"
        )
    k = getattr(sae.cfg, "k", None)
    l0_range = (float(k) * 0.99, float(k)) if isinstance(k, int) else None
    return SaeExpectations(min_fve=GENERIC_MIN_FVE, l0_range=l0_range, source="generic")
