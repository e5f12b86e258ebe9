"""Short feature labels read off the feature's top-activating contexts, not only its tokens.

The rule, kept simple so that it can be checked (``saewatch label-quality``):

1. the *label window* of a context is its peak token and the ``LABEL_WINDOW - 1`` tokens
   before it, widened to whole words;
2. a word (lower case, 3+ letters, not a stopword) is *typical* of the feature when it is in
   the label windows of at least ``MIN_CONTEXT_SHARE`` of its top ``LABEL_CONTEXTS`` contexts
   (and of two), and more often than in a random window of the corpus; the ``MAX_WORDS`` with
   the highest ``s * log(s / r)`` (``s`` the share of contexts, ``r`` the corpus rate) are kept;
3. the peak tokens of at least ``MIN_CONTEXT_SHARE`` of the contexts (and of two; at most
   ``MAX_WORDS``) lead the label when together they are the peak of ``DOMINANT_SHARE`` of
   them, the other typical words in brackets: ``'\\n' (ingredients · recipe)``, ``a / an``;
   otherwise the label is the typical words, ``recipe · ingredients``; with neither, the most
   frequent peak tokens, ``4 / 5 / 6``.

>>> from saewatch.models.cards import CardContext
>>> ctxs = [CardContext(tokens=(" the", " capital", " of", " France"),
...                     activations=(0.0, 0.0, 0.0, 2.0)) for _ in range(3)]
>>> context_label(ctxs, [], lambda word: 0.001)
'France (capital)'
>>> paris = CardContext(tokens=(" of", " Paris"), activations=(0.0, 1.0))
>>> context_label(ctxs[:1] + [paris, paris], [], lambda word: 0.001)
'Paris'
>>> context_label(ctxs + [paris] * 3, [], lambda word: 0.001)
'France / Paris (capital)'
>>> label_terms("France (capital)"), label_terms("4 / 5 / 6"), label_terms("'\\n' (list)")
(['france', 'capital'], ['4', '5', '6'], ["'\\n'", 'list'])
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

from saewatch.models.cards import CardContext, TokenCount

logger = logging.getLogger(__name__)

LABEL_CONTEXTS = 20  # contexts read per label: one text each, the strongest first
LABEL_WINDOW = 5  # the peak token and four before it
MIN_CONTEXT_SHARE = 0.2
DOMINANT_SHARE = 0.4
MAX_WORDS = 3
MAX_LABEL_CHARS = 80
NEVER_FIRED = "(never fired in the corpus)"
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]")
_ANY_WORD = re.compile(r"[a-z](?:[a-z'-]*[a-z])?")
_SPLIT = re.compile(r"\s*(?:[·/(),]|\s-\s)\s*")
# Function words carry no meaning of their own in a label (a short list: content words of
# instruction-following text such as "step" or "example" are kept on purpose).
STOPWORDS = frozenset(
    "the and for are but not you your yours all any can had has have her his its our out was "
    "were who whom what when where which why how this that these those then than them they "
    "their there here with from into onto over under about above below after before again "
    "also just only very more most some such each both few other own same too will would "
    "shall should could may might must does did doing done been being is was it's i'm don't "
    "one ones let lets get got use used using like well make made per via yes off".split())


def words_of(text: str) -> list[str]:
    """The label words of ``text``: lower case, 3+ letters, no stopwords.

    >>> words_of("The Capital of France's regions")
    ['capital', "france's", 'regions']
    """
    return [w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def all_words(text: str) -> list[str]:
    """Every word of ``text`` in lower case, stopwords and short ones included (what a label
    may name, as opposed to what :func:`words_of` builds labels from).

    >>> all_words("The cat, a dog")
    ['the', 'cat', 'a', 'dog']
    """
    return _ANY_WORD.findall(text.lower())


def token_display(token: str) -> str:
    """How a token shows in a label: its text without surrounding blanks, or its ``repr``
    when that leaves nothing readable.

    >>> token_display(" capital"), token_display("\\n"), token_display(" ")
    ('capital', "'\\\\n'", "' '")
    """
    stripped = token.strip()
    return stripped if any(ch.isalnum() for ch in stripped) else repr(token)


def label_window(tokens: Sequence[str], peak: int, size: int = LABEL_WINDOW) -> str:
    """The text of the ``size`` tokens up to ``peak``, widened to whole words at both ends."""
    lo = max(peak - size + 1, 0)
    while lo > 0 and tokens[lo][:1].isalnum():  # starts inside a word
        lo -= 1
    hi = peak + 1
    while hi < len(tokens) and tokens[hi][:1].isalpha():  # the peak word goes on
        hi += 1
    return "".join(tokens[lo:hi])


def typical_words(contexts: Sequence[CardContext], rate: Callable[[str], float]) -> list[str]:
    """Words of the label windows more frequent than chance, best first (rule 2)."""
    n = len(contexts)
    seen: Counter[str] = Counter()
    for ctx in contexts:
        seen.update(set(words_of(label_window(ctx.tokens, ctx.peak))))
    need = max(2, math.ceil(MIN_CONTEXT_SHARE * n)) if n > 1 else 1
    scored = []
    for word, count in seen.items():
        share = count / n
        if count >= need and share > rate(word):
            scored.append((share * math.log(share / rate(word)), word))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [w for _, w in scored[:MAX_WORDS]]


def context_label(contexts: Sequence[CardContext], top_tokens: Sequence[TokenCount],
                  rate: Callable[[str], float]) -> str:
    """The label of a feature from its top contexts (the module's rule)."""
    if not contexts:
        return NEVER_FIRED
    peaks = Counter(token_display(c.tokens[c.peak]) for c in contexts)
    need = max(2, math.ceil(MIN_CONTEXT_SHARE * len(contexts))) if len(contexts) > 1 else 1
    leads = [t for t, n in peaks.most_common(MAX_WORDS) if n >= need]
    led = sum(peaks[t] for t in leads) >= DOMINANT_SHARE * len(contexts)
    words = [w for w in typical_words(contexts, rate)
             if not (led and w in {t.lower() for t in leads})]
    if led and leads:
        lead = " / ".join(leads)
        label = f"{lead} ({' · '.join(words)})" if words else lead
    elif words:
        label = " · ".join(words)
    else:
        shown = [t for t, _ in peaks.most_common(3)] or [token_display(t.token)
                                                         for t in top_tokens[:3]]
        label = " / ".join(shown)
    return label[:MAX_LABEL_CHARS]


def label_terms(label: str) -> list[str]:
    """What a label claims, term by term: words (lower case) and bare tokens."""
    terms = []
    for part in _SPLIT.split(label.strip()):
        if not part:
            continue
        if part.startswith("'") and part.endswith("'") and len(part) > 1:
            terms.append(part)  # a token shown by its repr, e.g. '\n'
        elif any(ch.isalpha() for ch in part):
            terms.extend(all_words(part))
        else:
            terms.append(part)
    return list(dict.fromkeys(terms))


__all__ = ["LABEL_CONTEXTS", "LABEL_WINDOW", "NEVER_FIRED", "all_words", "context_label", "label_terms",
           "label_window", "token_display", "typical_words", "words_of"]
