"""The feature page at ``/features/{feature}``: what one SAE feature does, like a Neuronpedia
feature page, offline.

Server-rendered; every piece of text goes through :func:`html.escape`, and only numbers
computed here reach attribute values (the token highlights are inline ``background`` styles,
which the report page's CSP allows). It uses the report page's stylesheet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING

from saewatch.export.web.marks import example_text
from saewatch.models import FeatureFrequency, NpmiNeighbour, Snippet
from saewatch.models.cards import CardContext, CardNeighbour, FeatureCard

if TYPE_CHECKING:
    from saewatch.export.web.features import FeatureDetailOut

logger = logging.getLogger(__name__)

# Highlight colour of a firing token (the candidate orange of the report page), its opacity
# growing with the activation; tokens below this share of the window's peak stay unmarked.
HIGHLIGHT_RGB = "242,142,43"
MIN_SHOWN = 0.05
_BLANKS = {"\n": "↵", "\t": "⇥"}


def highlighted(context: CardContext, scale: float | None = None) -> str:
    """A context's tokens, each firing one marked with its activation (opacity and title).

    >>> html = highlighted(CardContext(tokens=("a", "<b>"), activations=(0.0, 2.0)))
    >>> 'title="activation 2.00"' in html and "&lt;b&gt;" in html and "a</span>" in html
    True
    """
    top = scale or context.activation or 1.0
    spans = []
    for i, (token, act) in enumerate(zip(context.tokens, context.activations, strict=True)):
        text = escape("".join(_BLANKS.get(ch, ch) for ch in token))
        share = min(act / top, 1.0) if top > 0 else 0.0
        peak = ' peak' if i == context.peak else ""
        if act > 0 and share >= MIN_SHOWN:
            spans.append(f'<span class="tok fires{peak}" style="background:rgba({HIGHLIGHT_RGB},'
                         f'{0.15 + 0.85 * share:.2f})" title="activation {act:.2f}">{text}</span>')
        else:
            spans.append(f'<span class="tok">{text}</span>')
    return "".join(spans)


def _feature_link(feature: int, labels: Mapping[int, str]) -> str:
    label = labels.get(feature)
    named = f' <span class="label">{escape(label)}</span>' if label else ""
    return f'<a href="/features/{feature}"><span class="fid">#{feature}</span></a>{named}'


def _stats(card: FeatureCard) -> str:
    items = [("fires on", f"{100 * card.density:.3f}% of corpus tokens"),
             ("corpus tokens fired", f"{card.fired:,}"), ("corpus texts", f"{card.documents:,}"),
             ("max activation", f"{card.max_activation:.2f}")]
    cells = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in items)
    return f'<dl class="stats">{cells}</dl>'


def _contexts(card: FeatureCard) -> str:
    if not card.contexts:
        return '<p class="muted">It never fired on the card corpus.</p>'
    items = "".join(
        f'<li><p class="context">{highlighted(c, card.max_activation)}</p><cite>{escape(c.field)}'
        f" · peak {c.activation:.2f}</cite></li>" for c in card.contexts)
    return (f"<h3>Top-activating contexts</h3><p class=\"muted\">Strongest firing in each of the "
            f"top texts of the card corpus; marked tokens are where it fires (darker: "
            f"stronger; hover for the activation).</p><ol class=\"contexts\">{items}</ol>")


def _top_tokens(card: FeatureCard) -> str:
    if not card.top_tokens:
        return ""
    rows = "".join(f"<tr><td><code>{escape(repr(t.token))}</code></td><td class=\"num\">"
                   f"{t.count:,}</td><td class=\"num\">{100 * t.share:.1f}%</td></tr>"
                   for t in card.top_tokens)
    return ('<div class="col"><h3>Tokens it fires on most</h3><table class="plain"><thead><tr>'
            f"<th>token</th><th>firings</th><th>share</th></tr></thead><tbody>{rows}</tbody>"
            "</table></div>")


def _neighbours(items: Sequence[CardNeighbour | NpmiNeighbour], labels: Mapping[int, str],
                title: str, note: str) -> str:
    rows = "".join(
        f"<tr><td>{_feature_link(n.feature, labels)}</td><td class=\"num\">{n.npmi:+.2f}</td>"
        f'<td class="num">{n.count:,}</td></tr>'
        for n in items if n.feature is not None)
    if not rows:
        return ""
    return (f'<div class="col"><h3>{escape(title)}</h3><p class="muted">{escape(note)}</p>'
            '<table class="plain"><thead><tr><th>feature</th><th>NPMI</th><th>together</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></div>")


def _shares(frequencies: Sequence[FeatureFrequency]) -> str:
    overall = [f for f in frequencies if f.window == "all"]
    if not overall:
        return ('<p class="muted">Not seen live yet: no state view, or no documents of any '
                "version.</p>")
    scale = max(f.frequency for f in overall) or 1.0
    rows = "".join(
        f"<tr><td>{escape(f.model_id)}</td><td>{escape(f.model_version)}</td>"
        f'<td>{escape(f.field)}</td><td class="num">{f.fired:,} / {f.documents:,}</td>'
        f'<td><span class="share-bar" style="width:{100 * f.frequency / scale:.1f}%"></span> '
        f"{100 * f.frequency:.1f}%</td></tr>" for f in overall)
    return ('<table class="plain shares"><thead><tr><th>model</th><th>version</th><th>field'
            "</th><th>documents with it</th><th>share</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _live_examples(examples: Sequence[Snippet], show: bool) -> str:
    if not show or not examples:
        return ""
    items = "".join(
        f'<blockquote class="snippet"><p>{example_text(s)}</p><cite>{escape(s.model_version)} · '
        f"event {escape(s.event_id)} · activation {s.activation:.2f}</cite></blockquote>"
        for s in examples)
    return f"<h3>Live examples</h3>{items}"


def render_feature_page(feature: int, detail: FeatureDetailOut | None,
                        labels: Mapping[int, str], show_snippets: bool) -> str:
    """The whole page of ``feature`` (a notice when nothing is known about it)."""
    if detail is None:
        body = (f'<main><p class="notice insufficient_data">Nothing is known about feature '
                f"#{feature}: no card for it, and no live state yet (or no such feature)."
                "</p></main>")
        return _page(feature, None, body)
    card = detail.card
    label = detail.label or (card.label if card is not None else None)
    sections = [f"<section><h2>Live: share per model version</h2>{_shares(detail.frequencies)}"
                f"{_live_examples(detail.examples, show_snippets)}</section>"]
    if card is not None:
        sections.insert(0, f'<section class="card"><h2>Card</h2>{_stats(card)}'
                        f"{_contexts(card)}<div class=\"examples\">{_top_tokens(card)}"
                        f"{_neighbours(card.neighbours, labels, 'Fires together with', 'NPMI over card-corpus tokens.')}"
                        "</div></section>")
    else:
        sections.insert(0, '<p class="muted">No feature card for this SAE (saewatch '
                        "feature-cards builds them).</p>")
    live = _neighbours(detail.neighbours, labels, "Live neighbours",
                       "NPMI over recent documents of the state.")
    body = f"<main>{''.join(sections)}{live}</main>"
    return _page(feature, label, body)


def _page(feature: int, label: str | None, body: str) -> str:
    named = f" · {escape(label)}" if label else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>saewatch · feature #{feature}{named}</title>"
        '<link rel="stylesheet" href="/static/report.css"></head><body class="feature-page">'
        f'<header class="top"><h1>feature <span class="fid">#{feature}</span></h1>'
        f'<span class="subtitle">{escape(label) if label else "unlabelled"}</span>'
        '<a class="back" href="/">← report</a></header>'
        f"{body}<footer><a href=\"/api/v1/features/{feature}\">JSON</a> · "
        '<a href="/">report</a></footer></body></html>'
    )
