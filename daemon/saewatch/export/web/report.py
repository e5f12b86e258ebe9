"""The report page at ``/``: per comparison, what changed, in words a person reads.

Server-rendered HTML; every piece of text from events, labels or model names goes through
:func:`html.escape`. The stylesheet and a small script (auto-refresh, verdict filter, relative
times) are package files served from ``/static/``, so the page works on an offline machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from importlib import resources

from saewatch.export.base import HistoryPoint
from saewatch.export.clusters import capped_clusters
from saewatch.export.web.behaviours import behaviours_section
from saewatch.export.web.charts import frequency_bars, sparkline, stacked_shares
from saewatch.export.web.marks import example_text
from saewatch.export.web.schemas import comparison_id
from saewatch.llm.summary import Narrative
from saewatch.models import (
    ClusterShare,
    ComparisonKey,
    ComparisonResult,
    DescriptorFinding,
    DriftReport,
    FeatureDelta,
    Snippet,
    Theme,
    VersionCount,
)

logger = logging.getLogger(__name__)

# Clusters drawn per version on the page; the rest is one grey "other" segment.
PAGE_MAX_CLUSTERS = 12
STATIC_FILES = {
    "report.css": "text/css; charset=utf-8",
    "report.js": "text/javascript; charset=utf-8",
}
_VERDICT_TEXT = {"drift": "drift", "no_drift": "no drift", "insufficient_data": "too few events"}

History = Callable[[ComparisonKey], Sequence[HistoryPoint]]
Narratives = Callable[[ComparisonKey], Narrative | None]


def _no_narrative(key: ComparisonKey) -> Narrative | None:
    return None


def static_file(name: str) -> bytes:
    """Content of a packaged static file (``report.css``, ``report.js``)."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return resources.files("saewatch.export.web").joinpath("static", name).read_bytes()


def _time(at: datetime) -> str:
    iso = at.isoformat()
    return f'<time datetime="{escape(iso)}">{escape(at.strftime("%Y-%m-%d %H:%M:%S %Z"))}</time>'


def _badge(verdict: str) -> str:
    return f'<span class="badge {escape(verdict)}">{escape(_VERDICT_TEXT.get(verdict, verdict))}</span>'


def _snippets(snippets: Sequence[Snippet], title: str) -> str:
    items = (
        "".join(
            f'<blockquote class="snippet"><p>{example_text(s)}</p><cite>event '
            f"{escape(s.event_id)} · activation {s.activation:.2f}</cite></blockquote>"
            for s in snippets
        )
        or '<p class="muted">no example kept</p>'
    )
    return f'<div class="col"><h4>{escape(title)}</h4>{items}</div>'


def _feature_rows(deltas: Sequence[FeatureDelta], key: ComparisonKey, show_snippets: bool) -> str:
    # The strongest change shows its examples unfolded: the first thing a reader wants to see.
    scale = max([max(d.freq_baseline, d.freq_candidate) for d in deltas] + [1e-9])
    rows = []
    for rank, d in enumerate(deltas, start=1):
        label = escape(d.label) if d.label else '<span class="muted">unlabelled</span>'
        rows.append(
            f'<tr class="feature" data-feature="{d.feature}"><td class="rank">{rank}</td>'
            f'<td><a href="/features/{d.feature}"><span class="fid">#{d.feature}</span></a> '
            f'<span class="label">{label}</span></td>'
            f"<td>{frequency_bars(d.freq_baseline, d.freq_candidate, scale)}</td>"
            f'<td class="num">{d.log_odds_ratio:+.2f}</td><td class="num">{d.q_value:.2g}</td>'
            f"<td>{_length_mark(d)}</td></tr>"
        )
        if show_snippets and (d.examples_baseline or d.examples_candidate):
            unfolded = " open" if rank == 1 else ""
            rows.append(
                f'<tr class="examples-row"><td></td><td colspan="5"><details{unfolded}>'
                '<summary>examples</summary><div class="examples">'
                f"{_snippets(d.examples_baseline, f'baseline · {key.baseline}')}"
                f"{_snippets(d.examples_candidate, f'candidate · {key.candidate}')}"
                "</div></details></td></tr>"
            )
    return "".join(rows)


def _length_mark(d: FeatureDelta) -> str:
    """A mark on a change that answer length accounts for; nothing on the others."""
    if d.length_explained is not True:
        return ""
    said = (f"stratified p={d.stratified_p:.2g}" if d.stratified_p is not None else "")
    if d.stratified_odds_ratio is not None:
        said += f", odds ratio {d.stratified_odds_ratio:.2f} at equal length"
    return f'<span class="length-mark" title="{escape(said)}">length</span>'


def _feature_table(
    title: str, deltas: Sequence[FeatureDelta], key: ComparisonKey, show_snippets: bool
) -> str:
    if not deltas:
        return f'<div class="table-wrap"><h3>{escape(title)}</h3><p class="muted">none</p></div>'
    return (
        f'<div class="table-wrap"><h3>{escape(title)}</h3><table class="features">'
        "<thead><tr><th>#</th><th>feature</th><th>documents with it "
        '<span class="legend baseline">baseline</span> <span class="legend candidate">candidate'
        '</span></th><th title="log-odds ratio, candidate vs baseline">log-odds</th>'
        '<th title="Benjamini-Hochberg q-value">q</th>'
        '<th title="change accounted for by a change of answer length (no longer significant '
        'within strata of equal token length); listed after the others">length</th></tr></thead>'
        f"<tbody>{_feature_rows(deltas, key, show_snippets)}</tbody></table></div>"
    )


def _descriptor_value(d: DescriptorFinding, value: float) -> str:
    if d.statistic == "median":
        return f"median {value:,.0f}" if value >= 10 else f"median {value:.1f}"
    return f"{'mean' if d.statistic == 'mean' else 'with one'} {100 * value:.1f}%"


def _descriptors(findings: Sequence[DescriptorFinding]) -> str:
    """Moved descriptors in words (the first findings a reader sees), then all in a table."""
    if not findings:
        return ""
    moved = [d for d in findings if d.moved]
    said = (
        '<ol class="findings">'
        + "".join(f'<li class="{escape(d.direction)}">{escape(d.text)}</li>' for d in moved)
        + "</ol>"
        if moved
        else '<p class="muted">No text descriptor moved (always-valid test).</p>'
    )
    rows = "".join(
        f'<tr class="{"moved" if d.moved else ""}"><td>{escape(d.descriptor)}</td>'
        f"<td>{escape(_descriptor_value(d, d.baseline))}</td>"
        f"<td>{escape(_descriptor_value(d, d.candidate))}</td>"
        f'<td class="num">{d.effect:+.2f}</td><td>{"moved" if d.moved else ""}</td></tr>'
        for d in findings
    )
    return (
        '<div class="descriptors"><h3>Text descriptors</h3>'
        f"{said}<details><summary>all descriptors</summary><table class=\"plain\"><thead><tr>"
        "<th>descriptor</th><th>baseline</th><th>candidate</th>"
        '<th title="largest gap between the sides\' shares above a bucket edge">effect</th>'
        f"<th></th></tr></thead><tbody>{rows}</tbody></table></details></div>"
    )


def _theme(t: Theme, key: ComparisonKey, show_snippets: bool) -> str:
    names = (" · ".join(escape(label) for label in t.labels)
             or '<span class="muted">unlabelled</span>')
    members = " ".join(f'<a href="/features/{f}"><span class="fid">#{f}</span></a>'
                       for f in t.features)
    of = ("documents with any member" if t.effect_basis == "any_member"
          else f"documents with #{t.leader}")
    examples = ""
    if show_snippets and (t.examples_baseline or t.examples_candidate):
        examples = (
            '<details><summary>examples</summary><div class="examples">'
            f"{_snippets(t.examples_baseline[:1], f'baseline · {key.baseline}')}"
            f"{_snippets(t.examples_candidate[:1], f'candidate · {key.candidate}')}"
            "</div></details>"
        )
    return (
        f'<li class="theme {escape(t.direction)}" data-theme="{escape(t.id)}">'
        f'<span class="label">{"more" if t.direction == "up" else "less"}: {names}</span> '
        f'<span class="effect">{100 * t.share_baseline:.1f}% → {100 * t.share_candidate:.1f}% '
        f"of {escape(of)} ({100 * t.effect:+.1f} points)</span>"
        f'<div class="members">{t.size} feature{"s" if t.size > 1 else ""}: {members}</div>'
        f"{examples}</li>"
    )


def _themes(result: ComparisonResult, show_snippets: bool) -> str:
    """Co-firing features as one finding each, after the descriptors and before the tables."""
    if not result.themes:
        return ""
    items = "".join(_theme(t, result.key, show_snippets) for t in result.themes)
    n = result.n_significant_themes
    groups = "group" if n == 1 else "groups"
    return (
        f'<div class="themes"><h3>Themes</h3><p class="muted">{n} '
        f"{groups} of significant features that fire on the same documents; the largest change "
        f'first in each direction.</p><ol class="themes">{items}</ol></div>'
    )


def _stats(result: ComparisonResult) -> str:
    items = [
        ("drift score", f"{result.drift_score:.2f}"),
        ("JS divergence", f"{result.divergence:.4f}"),
        ("significant features", str(result.n_significant)),
        (f"documents · {result.key.baseline}", f"{result.n_baseline:,}"),
        (f"documents · {result.key.candidate}", f"{result.n_candidate:,}"),
        ("per-feature tests", "rejected" if result.sequential_alarm else "not rejected"),
    ]
    if result.bet is not None:
        items.insert(0, ("pooled test", (
            f"{'rejected' if result.bet_alarm else 'not rejected'} · log e "
            f"{result.bet.peak_log_evidence:.1f} · {result.bet.pairs:,} pairs")))
    cells = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in items)
    return f'<dl class="stats">{cells}</dl>'


def _narrative(narrative: Narrative | None) -> str:
    if narrative is None:
        return ""
    return (f'<p class="narrative">{escape(narrative.text)} <span class="muted">— written by '
            f"{escape(narrative.model)} from the findings below</span></p>")


def _comparison(result: ComparisonResult, history: History, show_snippets: bool,
                narrative: Narrative | None = None) -> str:
    key = result.key
    message = (
        f'<p class="notice {escape(result.verdict)}">{escape(result.message)}</p>'
        if result.message
        else ""
    ) + _narrative(narrative)
    return (
        f'<section class="comparison" id="c-{comparison_id(key)}" '
        f'data-verdict="{escape(result.verdict)}"><header class="comparison-head"><h2>'
        f'{escape(key.model_id)} <span class="muted">·</span> {escape(key.field)} '
        f'<span class="versions">{escape(key.baseline)} → {escape(key.candidate)}</span></h2>'
        f'<span class="kind">{escape(key.kind)}</span> {_badge(result.verdict)}'
        f'<span class="computed">computed {_time(result.computed_at)}</span></header>{message}'
        f'<div class="summary">{_stats(result)}<figure class="trend">'
        f"{sparkline(history(key))}<figcaption>drift score over time</figcaption></figure></div>"
        f"{_descriptors(result.descriptors)}{_themes(result, show_snippets)}"
        f'<div class="feature-tables">'
        f"{_feature_table('More frequent in ' + key.candidate, result.top_up, key, show_snippets)}"
        f"{_feature_table('Less frequent in ' + key.candidate, result.top_down, key, show_snippets)}"
        "</div></section>"
    )


def _versions(versions: Sequence[VersionCount]) -> str:
    if not versions:
        return ""
    rows = "".join(
        f"<tr><td>{escape(v.model_id)}</td><td>{escape(v.model_version)}</td>"
        f'<td>{escape(v.field)}</td><td class="num">{v.documents:,}</td>'
        f"<td>{_time(v.first_seen) if v.first_seen else ''}</td>"
        f"<td>{_time(v.last_seen) if v.last_seen else ''}</td></tr>"
        for v in versions
    )
    return (
        '<section id="versions"><h2>Versions</h2><table class="plain"><thead><tr><th>model</th>'
        "<th>version</th><th>field</th><th>documents</th><th>first seen</th><th>last seen</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _clusters(clusters: Sequence[ClusterShare]) -> str:
    if not clusters:
        return ""
    tips = {
        (c.model_id, c.model_version, str(c.cluster)): ", ".join(c.top_labels[:3]) for c in clusters
    }
    rows: dict[tuple[str, str], list[tuple[str, float, str]]] = {}
    for labels, share, _docs in capped_clusters(clusters, PAGE_MAX_CLUSTERS):
        model_id, version, cluster = labels
        tip = tips.get((model_id, version, cluster), "")
        rows.setdefault((model_id, version), []).append((cluster, share, tip))
    body = "".join(
        f'<div class="cluster-row"><span class="who">{escape(m)} · {escape(v)}</span>'
        f"{stacked_shares(segments)}</div>"
        for (m, v), segments in rows.items()
    )
    return (
        '<section id="clusters"><h2>Cluster shares</h2><p class="muted">Streaming clusters of '
        f"documents per version; hover a segment for its top features.</p>{body}</section>"
    )


def _headline(result: ComparisonResult) -> str:
    return f' <span class="headline">{escape(result.headline)}</span>' if result.headline else ""


def _nav(report: DriftReport) -> str:
    links = "".join(
        f'<li data-verdict="{escape(r.verdict)}">{_badge(r.verdict)} <a href="#c-'
        f'{comparison_id(r.key)}">{escape(r.key.slug)}</a> <span class="muted">'
        f"{escape(r.key.kind)}</span>{_headline(r)}</li>"
        for r in report.comparisons
    )
    filters = "".join(
        f'<button type="button" data-filter="{v}">{escape(t)}</button>'
        for v, t in (("all", "all"), *_VERDICT_TEXT.items())
    )
    return f'<nav class="toc"><div class="filters">{filters}</div><ul>{links}</ul></nav>'


def render_report(report: DriftReport | None, history: History, show_snippets: bool,
                  narratives: Narratives = _no_narrative) -> str:
    """The whole page for ``report`` (a waiting page when there is none yet); ``narratives``
    gives the LLM's summary of a comparison where ``labels.llm`` is configured."""
    if report is None:
        body = (
            '<main><p class="notice insufficient_data">No drift report yet: saewatch computes '
            "the first one once enough events of two versions have been encoded. This page "
            "refreshes itself.</p></main>"
        )
        return _page(body, "waiting for the first report", refresh=True)
    sections = "".join(_comparison(r, history, show_snippets, narratives(r.key))
                       for r in report.comparisons)
    if not report.comparisons:
        sections = (
            '<p class="notice insufficient_data">No comparisons configured or possible yet.</p>'
        )
    body = (
        f"{_nav(report)}<main>{sections}"
        f"{behaviours_section(report.behaviours, show_snippets)}{_versions(report.versions)}"
        f"{_clusters(report.clusters)}</main>"
    )
    return _page(body, f"report generated {_time(report.generated_at)}", refresh=False)


def _page(body: str, subtitle: str, refresh: bool) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>saewatch · behavioural drift report</title>"
        '<link rel="stylesheet" href="/static/report.css">'
        '<script src="/static/report.js" defer></script></head>'
        f'<body data-autorefresh="{"on" if refresh else "off"}"><header class="top">'
        '<h1>saewatch</h1><span class="subtitle">behavioural drift of deployed LLMs, '
        f"in sparse-autoencoder features · {subtitle}</span>"
        '<label class="refresh"><input type="checkbox" id="autorefresh"> auto-refresh</label>'
        f"</header>{body}"
        '<footer><a href="/metrics">/metrics</a> · <a href="/api/v1/comparisons">JSON API</a> · '
        '<a href="/api/openapi.json">OpenAPI</a></footer></body></html>'
    )
