"""The ``behaviours:`` section: named behaviours defined by example texts.

Each entry gives its examples inline (``examples:``) or in a file (``examples_file:``, read as
``saewatch behaviour add --examples`` reads it), optional counter-examples likewise, and the
field it watches. The daemon fits the entries missing from its state when it starts
(``saewatch.behaviours.apply_configured``); a name already in the state keeps its stored
definition, so every restart and replica scores alike.

>>> spec = BehaviourSpec(name="apology", examples=["I'm sorry, I can't help with that."])
>>> spec.field, spec.examples_file is None
('response', True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from saewatch.config.base import Section

MAX_CONFIGURED = 32  # as models.behaviours.MAX_BEHAVIOURS: bounded metric cardinality


class BehaviourSpec(Section):
    """One behaviour of the configuration."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    examples: list[str] = Field(default_factory=list)
    examples_file: Path | None = None
    counter_examples: list[str] = Field(default_factory=list)
    counter_file: Path | None = None
    field: Literal["prompt", "response"] = "response"

    @model_validator(mode="after")
    def _check_examples(self) -> BehaviourSpec:
        if bool(self.examples) == (self.examples_file is not None):
            raise ValueError(f"behaviours[{self.name!r}]: give examples or examples_file "
                             "(one of them)")
        if self.counter_examples and self.counter_file is not None:
            raise ValueError(f"behaviours[{self.name!r}]: give counter_examples or "
                             "counter_file, not both")
        return self


def check_unique(specs: list[BehaviourSpec]) -> list[BehaviourSpec]:
    """The specs, if their names are unique and at most :data:`MAX_CONFIGURED`.

    >>> check_unique([BehaviourSpec(name="a", examples=["x"])] * 2)
    Traceback (most recent call last):
    ...
    ValueError: behaviours: 'a' is defined twice; give each behaviour its own name
    """
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ValueError(f"behaviours: {s.name!r} is defined twice; give each behaviour "
                             "its own name")
        seen.add(s.name)
    if len(specs) > MAX_CONFIGURED:
        raise ValueError(f"behaviours: {len(specs)} entries, at most {MAX_CONFIGURED}")
    return specs
