"""Watched behaviours on the HTTP port: ``/api/v1/behaviours[/{name}]`` and a report section.

Both read the latest report's :class:`~saewatch.models.behaviours.BehaviourSummary` values
(definition, share per version with its interval, version tests, latest matching events), so
they never touch the state. Behind the bearer token like every other route; with
``web.serve_snippets`` off the examples and matching events' text are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from pydantic import BaseModel, ConfigDict

from saewatch.export.exceptions import NotFound
from saewatch.export.web.api import JsonApi
from saewatch.export.web.routing import Param, Request, Response, Route
from saewatch.models.behaviours import BehaviourSummary

_NAME = Param("behaviour", "path", "string", "Behaviour name (from the list).", required=True)


class BehaviourList(BaseModel):
    """The watched behaviours of the latest report."""

    model_config = ConfigDict(frozen=True)

    generated_at: datetime | None
    items: list[BehaviourSummary]


class BehaviourEndpoints:
    """The behaviour routes of the JSON API.

    >>> from datetime import UTC, datetime
    >>> from saewatch.config import WebSettings
    >>> from saewatch.export.base import ReportHolder
    >>> from saewatch.export.web.routing import Request
    >>> from saewatch.models import DriftReport
    >>> holder = ReportHolder()
    >>> holder.publish(DriftReport(generated_at=datetime(2026, 11, 20, tzinfo=UTC), behaviours=(
    ...     BehaviourSummary(name="apology", field="response", examples=("Sorry!",),
    ...                      features=(3,), threshold=0.5),)))
    >>> ends = BehaviourEndpoints(JsonApi(holder, WebSettings(serve_snippets=False)))
    >>> ends.find("apology").examples  # the API redacts text, the summary keeps it
    ('Sorry!',)
    >>> ends.show(Request("/api/v1/behaviours/apology", {"behaviour": "apology"}, {})).status
    200
    """

    def __init__(self, api: JsonApi) -> None:
        self.api = api

    def summaries(self) -> tuple[BehaviourSummary, ...]:
        report = self.api.holder.latest
        return report.behaviours if report is not None else ()

    def find(self, name: str) -> BehaviourSummary:
        for s in self.summaries():
            if s.name == name:
                return s
        raise NotFound(f"no behaviour {name!r}; GET /api/v1/behaviours lists them")

    def listing(self, request: Request) -> Response:
        report = self.api.holder.latest
        return self.api.json_response(BehaviourList(
            generated_at=report.generated_at if report else None, items=list(self.summaries())))

    def show(self, request: Request) -> Response:
        return self.api.json_response(self.find(str(request.params["behaviour"])))

    def routes(self) -> list[Route]:
        return [
            Route("behaviours", "/api/v1/behaviours", "Watched behaviours: definition, share "
                  "per version with its 95% interval, version tests, latest matches", self.listing,
                  schema=BehaviourList),
            Route("behaviour", "/api/v1/behaviours/{behaviour}", "One watched behaviour", self.show,
                  schema=BehaviourSummary, params=(_NAME,)),
        ]


def behaviours_section(summaries: Sequence[BehaviourSummary], show_snippets: bool) -> str:
    """The report page's section: per behaviour its examples, features, share per version and
    the latest matching events.

    >>> html = behaviours_section([BehaviourSummary(name="apology", field="response",
    ...     examples=("Sorry <b>",), features=(3,), feature_labels=("regret",),
    ...     threshold=0.5)], show_snippets=True)
    >>> "Sorry &lt;b&gt;" in html and 'href="/features/3"' in html
    True
    """
    if not summaries:
        return ""
    return ('<section id="behaviours"><h2>Watched behaviours</h2>'
            + "".join(_behaviour(s, show_snippets) for s in summaries) + "</section>")


def _behaviour(s: BehaviourSummary, show_snippets: bool) -> str:
    examples = ("".join(f'<blockquote class="snippet"><p>{escape(t)}</p></blockquote>'
                        for t in s.examples) if show_snippets else
                '<p class="muted">text hidden (web.serve_snippets off)</p>')
    features = " ".join(
        f'<a href="/features/{f}"><span class="fid">#{f}</span></a> {escape(label)}'
        for f, label in zip(s.features, s.feature_labels or ("",) * len(s.features),
                            strict=True))
    shares = "".join(
        f"<tr><td>{escape(x.model_id)}</td><td>{escape(x.model_version)}</td>"
        f"<td>{escape(x.window)}</td><td class=\"num\">{x.flagged:,} / {x.documents:,}</td>"
        f'<td class="num">{100 * x.share:.1f}% ({100 * x.ci_low:.1f}–{100 * x.ci_high:.1f})'
        "</td></tr>" for x in s.shares)
    tests = "".join(
        f"<li>{escape(c.model_id)} {escape(c.baseline)} → {escape(c.candidate)}: "
        f"{100 * c.delta:+.1f} points, log evidence {c.log_evidence:.1f}"
        f"{' — <strong>alarm</strong>' if c.alarm else ''}</li>" for c in s.comparisons)
    latest = "".join(
        f'<blockquote class="snippet"><p>{escape(m.snippet or "")}</p><cite>event '
        f"{escape(m.event_id)} · {escape(m.model_version)} · score {m.score:.2f}</cite>"
        "</blockquote>" for m in s.latest) if show_snippets else ""
    return (
        f'<article class="behaviour" id="b-{escape(s.name)}"><h3>{escape(s.name)} '
        f'<span class="muted">{escape(s.field)}s</span></h3>'
        f"<h4>Defined by</h4>{examples}<h4>Features</h4><p>{features}</p>"
        + (f"<p>and the text descriptors {escape(', '.join(s.descriptors))}</p>"
           if s.descriptors else "") +
        '<h4>Share per version (95% interval)</h4><table class="plain"><thead><tr>'
        "<th>model</th><th>version</th><th>window</th><th>events</th><th>share</th></tr>"
        f"</thead><tbody>{shares}</tbody></table>"
        f"{f'<h4>Version changes</h4><ul>{tests}</ul>' if tests else ''}"
        f"{f'<h4>Latest matching events</h4>{latest}' if latest else ''}</article>")
