"""Plain counters a source keeps about what it read, routed and committed.

They are read by whoever exports metrics (the app wires them into Prometheus); nothing here
imports a metrics library. Counters only grow, so a scrape may read them at any time.

>>> s = SourceStats()
>>> s.count_invalid("schema"); s.count_invalid("schema"); s.count_valid(("response",))
>>> s.consumed, s.valid, s.invalid["schema"], s.truncated_fields["response"]
(3, 1, 2, 1)
>>> s.summary()
'consumed=3 valid=1 invalid=2 (invalid_json=0 schema=2 encoding=0 oversize=0 encoder=0) truncated=1 ...'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from saewatch.models import TEXT_FIELDS, InvalidReason, TextField

INVALID_REASONS: tuple[InvalidReason, ...] = get_args(InvalidReason)


def _zero_reasons() -> dict[InvalidReason, int]:
    return dict.fromkeys(INVALID_REASONS, 0)


def _zero_fields() -> dict[TextField, int]:
    return dict.fromkeys(TEXT_FIELDS, 0)


@dataclass
class SourceStats:
    """Running totals of one source since it was opened.

    Attributes
    ----------
    consumed
        Records read (valid + invalid).
    valid
        Records that passed validation and were handed on.
    invalid
        Invalid records per reason (``invalid_json``, ``schema``, ``encoding``, ``oversize``, ``encoder``).
    truncated
        Valid records with at least one text field cut to ``source.max_chars``.
    truncated_fields
        Cut fields, per field name.
    dead_letters_acked
        Invalid records the dead-letter topic has acknowledged.
    dead_letter_failures
        Failed dead-letter deliveries (each is retried; its offset is not committed meanwhile).
    commits, commit_failures
        Offset commits that succeeded / failed (a failed one is retried by the next commit).
    rebalances
        Partition assignments received from the group coordinator.
    broker_retries
        Times the source waited for an unavailable broker.
    """

    consumed: int = 0
    valid: int = 0
    invalid: dict[InvalidReason, int] = field(default_factory=_zero_reasons)
    truncated: int = 0
    truncated_fields: dict[TextField, int] = field(default_factory=_zero_fields)
    dead_letters_acked: int = 0
    dead_letter_failures: int = 0
    commits: int = 0
    commit_failures: int = 0
    rebalances: int = 0
    broker_retries: int = 0

    @property
    def invalid_total(self) -> int:
        """All invalid records, whatever the reason."""
        return sum(self.invalid.values())

    def count_valid(self, truncated_fields: tuple[TextField, ...]) -> None:
        """Count one valid record and the fields that were cut."""
        self.consumed += 1
        self.valid += 1
        if truncated_fields:
            self.truncated += 1
            for name in truncated_fields:
                self.truncated_fields[name] += 1

    def count_invalid(self, reason: InvalidReason) -> None:
        """Count one invalid record."""
        self.consumed += 1
        self.invalid[reason] += 1

    def summary(self) -> str:
        """One accounting line for logs: consumed, valid, invalid per reason, truncated."""
        reasons = " ".join(f"{r}={self.invalid[r]}" for r in INVALID_REASONS)
        return (
            f"consumed={self.consumed} valid={self.valid} invalid={self.invalid_total} "
            f"({reasons}) truncated={self.truncated} "
            f"dead_lettered={self.dead_letters_acked} commits={self.commits}"
        )
