"""The event schema (:class:`LLMEvent`), where a record sits in its source (:class:`SourcePosition`),
and the shared scalar types (text fields, partitions, bounded names)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

TextField = Literal["prompt", "response"]
# (topic, partition): the one key of a partition everywhere in saewatch (sources, offsets,
# checkpoints); kafka-python's own TopicPartition stays inside the Kafka source.
TopicPartition = tuple[str, int]
TEXT_FIELDS: tuple[TextField, ...] = ("prompt", "response")

# Bounds on metadata keep per-event memory and label cardinality predictable.
MAX_METADATA_ENTRIES = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 256

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NAME_PATTERN)]
MetadataKey = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_METADATA_KEY_CHARS, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$"
    ),
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]


def _bounded_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_ENTRIES:
        raise ValueError(
            f"metadata has {len(value)} entries; at most {MAX_METADATA_ENTRIES} are allowed "
            "(keep it to a few low-cardinality labels such as tenant, route, locale)"
        )
    return value


class LLMEvent(BaseModel):
    """One prompt/response exchange of a deployed LLM, as it arrives on the events topic.

    Validation is strict: unknown fields, wrong types and naive timestamps are rejected.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="LLMEvent")

    event_id: Identifier = Field(description="Unique id of the event (idempotency key).")
    timestamp: AwareDatetime = Field(description="When the response was produced, RFC 3339.")
    model_id: Name = Field(description="The deployed application or model, e.g. 'support-bot'.")
    model_version: Name = Field(description="Version of the model behind it, e.g. '2026-11-20'.")
    prompt: str = Field(description="The user's prompt (or the last user turn).")
    response: str = Field(description="The model's response.")
    conversation_id: Identifier | None = Field(default=None, description="Optional thread id.")
    metadata: Annotated[dict[MetadataKey, MetadataValue], AfterValidator(_bounded_metadata)] = (
        Field(
            default_factory=dict,
            description=f"Small map of low-cardinality labels (at most {MAX_METADATA_ENTRIES}).",
        )
    )

    def text(self, field: TextField) -> str:
        return self.prompt if field == "prompt" else self.response


class SourcePosition(BaseModel):
    """Where a record was read: a Kafka topic/partition/offset or a file and line number."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


__all__ = ["TextField", "TopicPartition", "TEXT_FIELDS", "MAX_METADATA_ENTRIES", "MAX_METADATA_KEY_CHARS", "MAX_METADATA_VALUE_CHARS", "Identifier", "Name", "MetadataKey", "MetadataValue", "LLMEvent", "SourcePosition"]
