"""An example's text with the tokens where its feature fires marked, for the report pages.

Where the state kept the example's top-activating window (:class:`~saewatch.models.ExampleWindow`)
the window is shown instead of the snippet's start, each firing token in a ``<mark>`` (its
blanks left outside) whose background opacity follows the activation (relative to the
example's peak) and whose title gives the value. All text goes through :func:`html.escape`; only numbers computed here reach
attribute values (inline ``background`` styles, which the pages' CSP allows).

>>> from saewatch.models import ExampleWindow, Highlight, Snippet
>>> w = ExampleWindow(text="say <hi> now", offset=10, highlights=(
...     Highlight(start=3, end=8, activation=2.0),))  # the token " <hi>": its blank stays out
>>> html = example_text(Snippet(event_id="e", model_version="v", activation=2.0,
...                             text="x", window=w))
>>> html
'…say <mark class="fires peak" style="background:rgba(242,142,43,1.00)" title="activation 2.00">&lt;hi&gt;</mark> now'
"""

from __future__ import annotations

from html import escape

from saewatch.models import ExampleWindow, Snippet

# The feature page's highlight colour (the candidate orange of the report page).
HIGHLIGHT_RGB = "242,142,43"
ELLIPSIS = "…"


def example_text(snippet: Snippet) -> str:
    """The snippet's window with marks, or its escaped text where it has no window."""
    if snippet.window is None:
        return escape(snippet.text)
    return marked_window(snippet.window, snippet.activation)


def marked_window(window: ExampleWindow, scale: float) -> str:
    """``window``'s text, firing tokens marked, opacity ``0.15 + 0.85 * activation / scale``."""
    top = max([scale] + [h.activation for h in window.highlights])
    peak = max(window.highlights, key=lambda h: h.activation, default=None)
    parts = [ELLIPSIS] if window.offset > 0 else []
    at = 0
    for h in window.highlights:
        if h.start < at or h.end > len(window.text):
            continue  # never nest or run past the text (a window is built not to)
        share = min(h.activation / top, 1.0) if top > 0 else 0.0
        cls = "fires peak" if h is peak else "fires"
        token = window.text[h.start : h.end]
        word = token.strip() or token  # a token's blanks stay outside its mark
        lead = token.index(word)
        parts.append(escape(window.text[at : h.start + lead]))
        parts.append(f'<mark class="{cls}" style="background:rgba({HIGHLIGHT_RGB},'
                     f'{0.15 + 0.85 * share:.2f})" title="activation {h.activation:.2f}">'
                     f"{escape(word)}</mark>")
        at = h.start + lead + len(word)
    parts.append(escape(window.text[at:]))
    return "".join(parts)


__all__ = ["ELLIPSIS", "HIGHLIGHT_RGB", "example_text", "marked_window"]
