"""Feature labels files: the committed schema, user files, Neuronpedia exports, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saewatch.config import EncodeSettings
from saewatch.encode.exceptions import LabelsError
from saewatch.encode.labels import FeatureLabels, labels_for_settings, load_labels

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "feature_labels.schema.json"


def test_committed_schema_matches_the_model() -> None:
    committed = json.loads(SCHEMA.read_text())
    generated = FeatureLabels.model_json_schema()
    assert committed["properties"] == generated["properties"]
    assert committed["$defs"] == generated["$defs"]
    assert committed["required"] == ["features"]


def test_user_labels_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"features": [{"feature": 7, "label": "apologies"}]}))
    labels = labels_for_settings(EncodeSettings(labels_path=path), d_sae=16)
    assert labels is not None and labels.label(7) == "apologies" and labels.label(8) is None


def test_neuronpedia_export_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "np.json"
    path.write_text(json.dumps([{"index": "3", "description": "legal text", "modelId": "x"}]))
    assert load_labels(path, d_sae=16).label(3) == "legal text"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        (json.dumps({"features": [{"feature": 1}]}), "does not match"),
        (json.dumps({"features": [{"feature": 99, "label": "x"}]}), "has 16 features"),
        (json.dumps([{"description": "no index"}]), "index"),
    ],
)
def test_bad_labels_files_fail_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(LabelsError, match=message):
        load_labels(path, d_sae=16)


def test_missing_labels_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="cannot read"):
        load_labels(tmp_path / "nope.json")
