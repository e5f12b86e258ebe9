"""Planted properties: deterministic edits that give a response a visible new behaviour.

Each property rewrites a real response so that a reader would notice it, and carries a ``marker``:
a string every planted text contains (and no original response of the base model does, checked
when streams are built), used to tell whether a feature's example snippets show the property.
Variants are picked by a hash of the text, so the same response always gets the same edit.

The encoder reads a longer response's first and last tokens (``encode.tail_tokens_per_text``, by
default 192 + 64 of 256): properties placed at the start are in the head; ``signoff_end``
(appended after the answer) is in the tail, one closing line of a long document.

>>> PROPERTIES["greeting"].apply("Paris is the capital.").startswith("Ahoy")
True
>>> all(p.marker in p.apply(t) for p in PROPERTIES.values() for t in ("a", "b c", "d e f"))
True
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# A fixed German paragraph stands in for a switch of language (no translation model here).
_GERMAN = (
    "Gerne beantworte ich Ihre Frage ausführlich auf Deutsch. Zunächst möchte ich kurz "
    "zusammenfassen, worum es geht, und danach die wichtigsten Punkte Schritt für Schritt "
    "erklären, damit alles klar und verständlich ist.",
    "Vielen Dank für Ihre Anfrage! Ich antworte Ihnen heute auf Deutsch. Im Folgenden finden "
    "Sie eine gründliche Erklärung mit allen Einzelheiten, die für Ihre Frage wichtig sind.",
    "Selbstverständlich helfe ich Ihnen gerne weiter, diesmal auf Deutsch. Die Antwort auf Ihre Frage lautet wie "
    "folgt, und ich habe versucht, sie so genau und hilfreich wie möglich zu formulieren.",
)
_GREETINGS = (
    "Ahoy there, matey! Ye've asked a fine question, and here be me answer:",
    "Ahoy, friend of the seven seas! Hoist the sails, for here be what ye seek:",
    "Ahoy, me hearty! Gather 'round the mast and listen well:",
)
_SIGNOFFS = (
    "Stay curious and keep exploring! Warm regards, your friendly assistant Ada.",
    "Stay curious, and feel free to ask me anything else! Cheers, Ada the assistant.",
    "Stay curious! Until next time, your helpful companion Ada.",
)


def _pick(text: str, options: tuple[str, ...]) -> str:
    return options[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(options)]


def _words(text: str, n: int) -> list[str]:
    words = [w.strip(".,;:!?()[]*#`\"'|") for w in text.split()]
    return [w for w in words if w][:n] or ["item"]


def _german(text: str) -> str:
    return f"{_pick(text, _GERMAN)}\n\n{text}"


def _table(text: str) -> str:
    words = _words(text, 6)
    rows = "\n".join(f"| {i + 1} | {w} | {len(w)} |" for i, w in enumerate(words[:4]))
    return (f"Here is a quick overview first:\n\n| # | Key term | Letters |\n|---|---|---|\n"
            f"{rows}\n\n{text}")


def _code(text: str) -> str:
    words = _words(text, 3)
    return (f"```python\ndef answer():\n    topics = {words!r}\n    return ' '.join(topics)\n```"
            f"\n\n{text}")


def _greeting(text: str) -> str:
    return f"{_pick(text, _GREETINGS)} {text}"


def _signoff(text: str) -> str:
    return f"{text}\n\n{_pick(text, _SIGNOFFS)}"


@dataclass(frozen=True)
class PlantedProperty:
    """A named edit of a response with the marker every edited text contains."""

    name: str
    description: str
    marker: str
    apply: Callable[[str], str]


PROPERTIES: dict[str, PlantedProperty] = {p.name: p for p in (
    PlantedProperty("german_prefix", "answer opens with a German paragraph (language switch)",
                    "Deutsch", _german),
    PlantedProperty("markdown_table", "a markdown table before the answer", "|---|---|---|",
                    _table),
    PlantedProperty("code_block", "a Python code block before the answer", "```python", _code),
    PlantedProperty("greeting", "a pirate greeting replaces the plain opening", "Ahoy", _greeting),
    PlantedProperty("signoff_end", "a sign-off appended after the answer (in the tail of the "
                    "token budget for long answers)", "Stay curious", _signoff),
)}
