"""Feature labels written by the optional LLM from top-activating contexts, and kept only if
they predict where the feature fires on held-out contexts.

The method of automated interpretability (explain, then simulate and score): the LLM reads the
feature's strongest contexts, the tokens where it fires marked ``«like this»``, and proposes a
short label; then, for held-out contexts (half where the feature fires, half where it does not,
markers removed) it is asked whether the label applies. The label is kept when its answers are
right at least ``labels.llm.min_label_score`` of the time (balanced accuracy, so a judge that
always says yes scores 0.5 and is refused).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from saewatch.llm.client import ChatClient, Message

MARK_OPEN, MARK_CLOSE = "«", "»"
MAX_LABEL_WORDS = 6
PROPOSE_SYSTEM = (
    "You name what a feature of a text model detects. You see text snippets where it fires; "
    f"the tokens where it fires most are marked {MARK_OPEN}like this{MARK_CLOSE}. Answer with "
    f"a label of at most {MAX_LABEL_WORDS} words, nothing else."
)
JUDGE_SYSTEM = "Answer with one word: yes or no."


@dataclass(frozen=True)
class LabelVerdict:
    """A proposed label and how well it predicted firing on held-out contexts.

    >>> v = LabelVerdict("code blocks", true_pos=3, false_pos=1, false_neg=1, true_neg=3,
    ...                  min_score=0.7)
    >>> v.score, v.kept, v.precision, v.recall
    (0.75, True, 0.75, 0.75)
    """

    label: str
    true_pos: int
    false_pos: int
    false_neg: int
    true_neg: int
    min_score: float

    @property
    def score(self) -> float:
        """Balanced accuracy over the judged contexts (0.5 for a constant answer)."""
        pos, neg = self.true_pos + self.false_neg, self.false_pos + self.true_neg
        if not pos or not neg:
            return 0.0
        return (self.true_pos / pos + self.true_neg / neg) / 2

    @property
    def precision(self) -> float:
        said = self.true_pos + self.false_pos
        return self.true_pos / said if said else 0.0

    @property
    def recall(self) -> float:
        pos = self.true_pos + self.false_neg
        return self.true_pos / pos if pos else 0.0

    @property
    def kept(self) -> bool:
        return bool(self.label) and self.score >= self.min_score


def mark(tokens: Sequence[str], activations: Sequence[float], share: float = 0.5) -> str:
    """Join a context's tokens, marking those at ≥ ``share`` of its strongest activation.

    >>> mark(["The", " cat", " sat"], [0.0, 2.0, 1.5])
    'The« cat»« sat»'
    """
    peak = max(activations, default=0.0)
    return "".join(
        f"{MARK_OPEN}{t}{MARK_CLOSE}" if peak > 0 and a >= share * peak else t
        for t, a in zip(tokens, activations, strict=True)
    )


def unmark(text: str) -> str:
    """The context without its markers (what the judge reads)."""
    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def propose_label(client: ChatClient, contexts: Sequence[str]) -> str:
    """The LLM's short label for a feature from its marked top contexts ('' if it gave none)."""
    shown = "\n".join(f"{i + 1}. {c.strip()}" for i, c in enumerate(contexts))
    answer = client.complete(
        [Message("system", PROPOSE_SYSTEM), Message("user", f"Snippets:\n{shown}\nLabel:")],
        max_tokens=24,
    )
    return clean_label(answer)


def clean_label(answer: str) -> str:
    """First line, no enumeration, markers, quotes or trailing punctuation, at most
    :data:`MAX_LABEL_WORDS` words.

    >>> clean_label('Label: "Python code blocks."\\nBecause ...')
    'Python code blocks'
    >>> clean_label("1. «Stir»-fried rice")
    'Stir-fried rice'
    """
    line = unmark(answer.strip().splitlines()[0]) if answer.strip() else ""
    line = re.sub(r"^(label|answer)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = re.sub(r"^\s*(\d+[.)]|[-*•])\s*", "", line)
    line = line.strip().strip("\"'`*").rstrip(".!?:;,").strip()
    return " ".join(line.split()[:MAX_LABEL_WORDS])


def applies(client: ChatClient, label: str, context: str) -> bool:
    """Whether the LLM says ``label`` describes something in ``context`` (markers removed)."""
    answer = client.complete(
        [Message("system", JUDGE_SYSTEM),
         Message("user", f'Text: "{unmark(context).strip()}"\n'
                         f'Does this text contain {label}? Answer yes or no.')],
        max_tokens=3,
    )
    return answer.strip().lower().startswith("yes")


def llm_label(
    client: ChatClient,
    firing: Sequence[str],
    silent: Sequence[str],
    min_score: float,
    explain: int = 5,
) -> LabelVerdict:
    """Propose a label from the first ``explain`` of ``firing`` (strongest first, marked) and
    score it on the rest of ``firing`` against ``silent`` (contexts where it does not fire)."""
    label = propose_label(client, firing[:explain])
    held_out = firing[explain:]
    tp = fp = fn = tn = 0
    if label:
        for context in held_out:
            if applies(client, label, context):
                tp += 1
            else:
                fn += 1
        for context in silent:
            if applies(client, label, context):
                fp += 1
            else:
                tn += 1
    return LabelVerdict(label, tp, fp, fn, tn, min_score)
