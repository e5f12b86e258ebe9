"""Extract the text descriptors of :data:`~saewatch.models.DESCRIPTORS` from a batch of texts.

A pure function of the texts (and of the encoder's token counts), kept small next to the rest of
the state update (``benchmarks/perf/aggregate.py``, section ``descriptors``), because every pass
over the characters costs about as much as a sparse feature update:

* per text, only C-speed string methods: ``len``, ``str.count`` (line ends, question marks),
  ``str.isascii`` (free: CPython stores the flag);
* words (starts of non-space runs), ASCII letters and capitals come from a few vectorised
  passes over the batch's joined UTF-8 bytes (bytes ≤ 0x20 are spaces; a byte of a non-ASCII
  character is ≥ 0x80, so never a space nor an ASCII letter), summed per text by ``reduceat``;
* the non-ASCII characters of non-ASCII texts are classified exactly
  (``str.isalpha``/``str.isupper``), once per *distinct* code point, and added to the ASCII
  counts (for an ASCII character both classes are the A-Z/a-z tests);
* markdown structure (list items, fences, headers, table rules) is one regex scan of the joined
  text; the pattern starts with a line end, which the regex engine finds by fast search, so
  only line starts are tried, a prose line fails at its first character, and only matches (a
  few per answer) cost Python time.

Texts are joined with ``"\\n"`` (after a leading one), so every text starts at a line start and
no pattern matches across two texts (none crosses a line end).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from saewatch.models import DESCRIPTOR_NAMES, N_DESCRIPTORS

logger = logging.getLogger(__name__)

# One alternative per structure, each at a line start (indent allowed): a list item ("- x",
# "* x", "+ x", "• x", "1. x", "1) x"); a code fence (``` or ~~~, two per block); a markdown
# header; a table's delimiter row ("|---|:--:|", "--- | ---": exactly one per table). The
# indentation is possessive and followed by a look-ahead at the first characters the four can
# start with: most lines (prose) fail there at once instead of trying each alternative and
# then every shorter indentation, which no alternative can match (a third faster, same matches).
STRUCTURE = re.compile(
    r"\n[ \t]*+(?=[-*+•\d`~#|:])"
    r"(?:(?P<list_items>(?:[-*+•]|\d{1,3}[.)])[ \t]+\S)|(?P<code_blocks>```|~~~)"
    r"|(?P<headers>#{1,6}[ \t]+\S)"
    r"|(?P<tables>\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+(?:[ \t]*:?-{3,}:?[ \t]*)?$))",
    re.MULTILINE)
ASCII_UPPER = bytes(range(65, 91))
ASCII_LETTERS = ASCII_UPPER + bytes(range(97, 123))
_COL = {name: i for i, name in enumerate(DESCRIPTOR_NAMES)}


def extract_descriptors(texts: Sequence[str], n_tokens: np.ndarray | None = None) -> np.ndarray:
    """Descriptor values, ``float64[len(texts), N_DESCRIPTORS]`` in the order of DESCRIPTORS.

    ``n_tokens`` are the encoder's token counts of the same texts (after its budget); zeros when
    absent. Shares are over letters, 0 for a text without letters.

    >>> text = "# Plan\\n\\n1. Ask?\\n2. Wait.\\n\\n| a | b |\\n|---|---|\\n| 1 | é |\\n```\\nx\\n```"
    >>> row = extract_descriptors([text, ""], np.array([30, 0]))
    >>> {n: round(float(v), 3) for n, v in zip(DESCRIPTOR_NAMES, row[0])}
    {'words': 20.0, 'characters': 65.0, 'tokens': 30.0, 'lines': 11.0, 'list_items': 2.0,
     'code_blocks': 1.0, 'headers': 1.0, 'tables': 1.0, 'question_marks': 1.0,
     'non_ascii_share': 0.067, 'uppercase_share': 0.2}
    >>> row[1].tolist() == [0.0] * N_DESCRIPTORS
    True
    """
    n = len(texts)
    out = np.zeros((n, N_DESCRIPTORS), dtype=np.float64)
    if n == 0:
        return out
    if n_tokens is not None:
        out[:, _COL["tokens"]] = n_tokens
    encoded = [t.encode("utf-8", errors="surrogatepass") for t in texts]
    ascii_letters = _byte_counts(encoded, out)
    _per_text_counts(texts, ascii_letters, out)
    _structure_counts(texts, out)
    return out


def _byte_counts(encoded: list[bytes], out: np.ndarray) -> np.ndarray:
    """Words, and letters and capitals of ASCII text, from one array of the batch's bytes;
    returns the ASCII letters and capitals per text (``int64[2, n]``)."""
    # Separators before and after every text: an empty last text still starts inside the array.
    joined = np.frombuffer(b"\n" + b"\n".join(encoded) + b"\n", dtype=np.uint8)
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    text_starts = np.cumsum(lengths + 1) - lengths  # after the separator before each text
    space = joined <= 32  # ASCII white space and controls; UTF-8 multibyte parts are >= 0x80
    # A word starts at p + 1 where p is a space and p + 1 is not: text i's starts are those of
    # p in [start_i - 1, start_{i+1} - 1), its own leading separator included. Per-segment sums
    # (reduceat) of int8 views: one pass each, no positions or owners to sort (~5x faster).
    starts_here = space[:-1] & ~space[1:]
    out[:, _COL["words"]] = _segment_sums(starts_here, text_starts - 1)
    # uint8 arithmetic wraps: (x - 65) < 26 is 65 <= x <= 90 in one comparison.
    upper = (joined - np.uint8(65)) < 26
    letters = ((joined | np.uint8(32)) - np.uint8(97)) < 26
    # A text's segment runs to the next text's start (its trailing separator is no letter).
    per_text = np.stack([_segment_sums(letters, text_starts), _segment_sums(upper, text_starts)])
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, _COL["uppercase_share"]] = np.where(per_text[0] > 0, per_text[1] / per_text[0], 0)
    return per_text


def _segment_sums(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """True values of ``mask`` from each start to the next (the last: to the end).

    Every segment is non-empty here (a separator follows each text), so ``reduceat``'s rule
    for empty ones never applies. Summed in int32 (3x faster than int64 here, exact: a text
    is far below 2**31 bytes)."""
    sums: np.ndarray = np.add.reduceat(mask.view(np.int8), starts, dtype=np.int32)
    return sums.astype(np.int64)


def _per_text_counts(texts: Sequence[str], ascii_letters: np.ndarray, out: np.ndarray) -> None:
    # List comprehensions of C methods: no per-text numpy item access (that costs more than
    # the counting itself).
    out[:, _COL["characters"]] = [len(t) for t in texts]
    out[:, _COL["lines"]] = [t.count("\n") + 1 if t else 0 for t in texts]
    out[:, _COL["question_marks"]] = [t.count("?") for t in texts]
    others = [i for i, t in enumerate(texts) if not t.isascii()]
    if others:  # exact Unicode classes complete the ASCII-only counts of _byte_counts
        chosen = [texts[i] for i in others]
        out[others, _COL["question_marks"]] += [t.count("\uff1f") for t in chosen]
        high = _high_letter_counts(chosen)
        letters = ascii_letters[0, others] + high[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[others, _COL["uppercase_share"]] = np.where(
                letters > 0, (ascii_letters[1, others] + high[1]) / letters, 0)
            out[others, _COL["non_ascii_share"]] = np.where(letters > 0, high[0] / letters, 0)


def _high_letter_counts(texts: Sequence[str]) -> np.ndarray:
    """Letters (``str.isalpha``) and capitals (``str.isupper``) among the non-ASCII characters
    of each text, ``int64[2, len(texts)]``: exact Unicode classes, looked up once per distinct
    code point. (For an ASCII character both are the A-Z/a-z tests of :func:`_byte_counts`.)"""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    cp = np.frombuffer("".join(texts).encode("utf-32-le", errors="surrogatepass"), dtype="<u4")
    where = np.flatnonzero(cp > 127)  # a few percent of the characters: only those are sorted
    distinct, inverse = np.unique(cp[where], return_inverse=True)
    chars = [chr(int(c)) for c in distinct]
    alpha = np.fromiter((c.isalpha() for c in chars), dtype=bool, count=len(chars))[inverse]
    upper = np.fromiter((c.isupper() for c in chars), dtype=bool, count=len(chars))[inverse]
    owner = np.searchsorted(np.cumsum(lengths), where, side="right")
    return np.stack([np.bincount(owner[alpha], minlength=len(texts)),
                     np.bincount(owner[upper], minlength=len(texts))])


def _structure_counts(texts: Sequence[str], out: np.ndarray) -> None:
    joined = "\n" + "\n".join(texts)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    line_ends = np.cumsum(lengths + 1) - lengths - 1  # the "\\n" before each text
    # (group number, position) of every match: one searchsorted and one bincount for all.
    found = np.array([(m.lastindex, m.start()) for m in STRUCTURE.finditer(joined)],
                     dtype=np.int64).reshape(-1, 2)
    if not len(found):
        return
    owner = np.searchsorted(line_ends, found[:, 1], side="right") - 1
    n = len(texts)
    counts = np.bincount((found[:, 0] - 1) * n + owner, minlength=len(STRUCTURE.groupindex) * n)
    for name, group in STRUCTURE.groupindex.items():
        column = counts[(group - 1) * n : group * n].astype(np.float64)
        if name == "code_blocks":
            column = np.ceil(column / 2)  # an unclosed fence still opened a block
        out[:, _COL[name]] = column
