"""Feature labels: the file format, reading a user's file, and deriving labels from a corpus.

A labels file (``schemas/feature_labels.schema.json``) gives per SAE feature a short label,
its top tokens and a few example snippets. The default SAE ships one derived from its top
activating tokens in the training corpus; users can supply their own (e.g. converted from
Neuronpedia explanations) through ``encode.labels_path``. Neuronpedia's export format
(a JSON list of ``{"index": ..., "description": ...}``) is accepted as is.

>>> labels = FeatureLabels.model_validate(
...     {"d_sae": 4, "features": [{"feature": 2, "label": "code blocks"}]})
>>> labels.label(2), labels.label(3)
('code blocks', None)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from saewatch.config import EncodeSettings
from saewatch.encode.default import LABELS_FILE, sae_folder, same_sae
from saewatch.encode.exceptions import LabelsError

logger = logging.getLogger(__name__)

MARK_OPEN, MARK_CLOSE = "\u27e6", "\u27e7"  # ⟦token⟧ marks the activating token in a snippet


class FeatureLabel(BaseModel):
    """What one SAE feature responds to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: int = Field(ge=0, description="SAE feature (latent) index.")
    label: str = Field(max_length=200, description="Short human-readable label.")
    top_tokens: list[str] = Field(default_factory=list, description="Most frequent top tokens.")
    examples: list[str] = Field(
        default_factory=list, description="Snippets; the activating token is marked ⟦like this⟧."
    )
    token_frequency: float | None = Field(
        default=None, ge=0, le=1, description="Share of corpus tokens on which it fires."
    )
    max_activation: float | None = Field(default=None, description="Largest activation seen.")


class FeatureLabels(BaseModel):
    """A labels file: labels for (some of) the features of one SAE."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="FeatureLabels")

    sae_id: str | None = Field(default=None, description="Which SAE the labels describe.")
    d_sae: int | None = Field(default=None, gt=0, description="The SAE's number of features.")
    method: str | None = Field(default=None, description="How the labels were made.")
    features: list[FeatureLabel]
    _by_index: dict[int, FeatureLabel] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._by_index = {f.feature: f for f in self.features}

    def get(self, feature: int) -> FeatureLabel | None:
        return self._by_index.get(feature)

    def label(self, feature: int) -> str | None:
        """The short label of ``feature``, or ``None`` when the file has none."""
        entry = self._by_index.get(feature)
        return entry.label if entry is not None else None


def load_labels(path: Path, d_sae: int | None = None) -> FeatureLabels:
    """Read a labels file (saewatch or Neuronpedia format) and check it fits the SAE.

    Raises
    ------
    LabelsError
        Missing file, invalid content, or feature indices beyond ``d_sae``.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from exc
    if isinstance(raw, list):  # Neuronpedia explanations export
        raw = {"method": "neuronpedia", "features": [_from_neuronpedia(e) for e in raw]}
    try:
        labels = FeatureLabels.model_validate(raw)
    except ValidationError as exc:
        raise LabelsError(
            f"labels file {path} does not match schemas/feature_labels.schema.json: {exc}"
        ) from exc
    too_big = [f.feature for f in labels.features if d_sae is not None and f.feature >= d_sae]
    if too_big:
        raise LabelsError(
            f"labels file {path} labels feature {too_big[0]} but the SAE has {d_sae} features"
        )
    return labels


def labels_for_settings(
    settings: EncodeSettings, d_sae: int | None, encoder_id: str | None = None
) -> FeatureLabels | None:
    """The configured labels file (strict), else :data:`LABELS_FILE` beside the SAE (the
    shipped default's folder, or ``encode.sae.path``) when there is one.

    With ``encoder_id`` a labels file found beside the SAE is used only if it describes that
    encoder's SAE (its ``sae_id``): a retrained SAE must not inherit stale labels.
    """
    if settings.labels_path is not None:
        return load_labels(settings.labels_path, d_sae)
    folder = sae_folder(settings)
    if folder is None or not (folder / LABELS_FILE).is_file():
        logger.warning("no feature labels (encode.labels_path): diffs show feature ids only")
        return None
    # Which SAE the labels describe is checked before their size: another SAE's width is not
    # an error, only a reason to go without labels.
    labels = load_labels(folder / LABELS_FILE, None if encoder_id is not None else d_sae)
    if encoder_id is not None and not same_sae(labels.sae_id, encoder_id):
        logger.warning("the labels beside the SAE describe %s, not %s: no labels",
                       labels.sae_id, encoder_id)
        return None
    return labels


def _from_neuronpedia(entry: object) -> dict[str, object]:
    if not isinstance(entry, dict) or "index" not in entry:
        raise LabelsError("Neuronpedia labels need objects with 'index' and 'description'")
    return {"feature": int(entry["index"]), "label": str(entry.get("description", ""))[:200]}
