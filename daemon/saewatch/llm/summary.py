"""A few sentences on what changed in one comparison, written by the optional LLM from the
comparison's own findings: moved text descriptors, themes, top features with their labels.

The prompt holds numbers the diff computed, nothing else: the LLM only puts them in words. A
:class:`Narrative` carries the digest of the findings it was written from, so it is rewritten
when they change and never shown beside findings it does not describe.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from saewatch.llm.client import ChatClient, Message
from saewatch.models import ComparisonResult, FeatureDelta

MAX_SENTENCES = 3
MAX_CHARS = 600
FEATURES_SHOWN = 5  # per direction
THEMES_SHOWN = 4

SYSTEM = (
    "You explain to an on-call engineer how the outputs of a deployed language model changed "
    "between two versions. Use only the findings given. Answer in at most three short "
    "sentences, plain text, no lists."
)


class Narrative(BaseModel):
    """The LLM's summary of one comparison's findings.

    >>> Narrative(text="Responses got shorter.", model="m", findings_digest="ab").text
    'Responses got shorter.'
    """

    model_config = ConfigDict(frozen=True)

    text: str
    model: str = Field(description="The LLM that wrote it (labels.llm.model).")
    findings_digest: str = Field(description="Digest of the findings it was written from.")
    generated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def findings_text(result: ComparisonResult) -> str:
    """The comparison's findings as the lines the LLM reads (also what the digest covers).

    Counts and shares only, rounded, so a new report with the same findings keeps its
    narrative; labels are quoted as data.
    """
    key = result.key
    lines = [
        f"Model {key.model_id}, {key.field} texts, version {key.baseline} (baseline, "
        f"{result.n_baseline} events) vs {key.candidate} (candidate, {result.n_candidate} "
        f"events). Verdict: {result.verdict.replace('_', ' ')}.",
    ]
    moved = [d for d in result.descriptors if d.moved]
    if moved:
        lines.append("Text descriptors that moved: " + "; ".join(d.text for d in moved) + ".")
    for theme in result.themes[:THEMES_SHOWN]:
        names = ", ".join(f'"{label}"' for label in theme.labels) or "unlabelled features"
        lines.append(
            f"Theme ({'more' if theme.direction == 'up' else 'less'} frequent): {names}; share "
            f"{_pct(theme.share_baseline)} -> {_pct(theme.share_candidate)}."
        )
    for title, deltas in (("More frequent", result.top_up), ("Less frequent", result.top_down)):
        shown = [d for d in deltas if d.label][:FEATURES_SHOWN]
        if shown:
            lines.append(f"{title} in {key.candidate}: " + "; ".join(map(_feature, shown)) + ".")
    return "\n".join(lines)


def findings_digest(result: ComparisonResult) -> str:
    """A short digest of :func:`findings_text` (same findings, same digest)."""
    return hashlib.sha256(findings_text(result).encode()).hexdigest()[:16]


def summarise(client: ChatClient, result: ComparisonResult) -> Narrative:
    """Ask the LLM for the comparison's narrative; raises :class:`~saewatch.errors.LLMError`
    when the endpoint fails."""
    findings = findings_text(result)
    answer = client.complete([
        Message("system", SYSTEM),
        Message("user", f"Findings:\n{findings}\n\nWhat changed, in at most three sentences?"),
    ])
    return Narrative(text=tidy(answer), model=client.settings.model,
                     findings_digest=hashlib.sha256(findings.encode()).hexdigest()[:16])


def tidy(answer: str) -> str:
    """At most :data:`MAX_SENTENCES` sentences and :data:`MAX_CHARS` characters, one line.

    >>> tidy("  One.\\nTwo!  Three? Four. ")
    'One. Two! Three?'
    """
    flat = re.sub(r"\s+", " ", answer).strip()
    sentences = re.findall(r"[^.!?]+[.!?]+|[^.!?]+$", flat)
    text = " ".join(s.strip() for s in sentences[:MAX_SENTENCES])
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rstrip() + "…"


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def _feature(d: FeatureDelta) -> str:
    note = ", explained by length" if d.length_explained else ""
    return (f'"{d.label}" in {_pct(d.freq_baseline)} -> {_pct(d.freq_candidate)} of texts'
            f"{note}")
