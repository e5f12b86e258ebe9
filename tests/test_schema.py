"""The committed event schema matches the model, and the README's example is a valid event."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from saewatch.cli import main
from saewatch.models import LLMEvent

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def _generated(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["schema"]) == 0
    return capsys.readouterr().out


def test_committed_schema_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    committed = (SCHEMAS / "llm_event.schema.json").read_text()
    assert committed == _generated(capsys), (
        "schemas/llm_event.schema.json is out of date: run `make schema` and commit it"
    )


def _readme_example() -> dict[str, object]:
    readme = (SCHEMAS / "README.md").read_text()
    block = re.search(r"### Example\s+```json\n(.*?)```", readme, re.S)
    assert block is not None, "schemas/README.md lost its example event"
    return json.loads(block.group(1))


def test_readme_example_is_valid_for_model_and_schema() -> None:
    example = _readme_example()
    event = LLMEvent.model_validate_json(json.dumps(example))
    assert (event.model_id, event.metadata["tenant"]) == ("support-bot", "acme")
    schema = json.loads((SCHEMAS / "llm_event.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(example)


@pytest.mark.parametrize(
    "change",
    [
        {"surprise": 1},
        {"model_id": "has space"},
        {"prompt": 7},
        {"metadata": {"tenant": 7}},
    ],
)
def test_schema_and_model_reject_the_same_mistakes(change: dict[str, object]) -> None:
    bad = _readme_example() | change
    schema = json.loads((SCHEMAS / "llm_event.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)
    with pytest.raises(ValueError):
        LLMEvent.model_validate_json(json.dumps(bad))
