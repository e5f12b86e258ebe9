"""JSON API handlers: comparisons and their diffs, features, retrieval, versions, clusters.

Comparisons, versions and clusters are read from the latest report; one feature's detail, its
examples and retrieval are answered by the frozen state view published with it (or by a fixed
:class:`StateQueries` given to the server). Neither touches the live state, so no request waits
for the consumer. With ``web.serve_snippets`` off, every piece of event text is removed before a
response is encoded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel

from saewatch.config import WebSettings
from saewatch.errors import SaewatchError
from saewatch.export.base import ReportHolder, StateQueries
from saewatch.export.exceptions import BadRequest, NotFound, Unavailable
from saewatch.export.web.routing import Param, ParamValue, Request, Response, Route
from saewatch.export.web.schemas import (
    ClusterList,
    ComparisonDiff,
    ComparisonList,
    ComparisonSummary,
    HistoryPointOut,
    RankedFeature,
    RetrievalResult,
    SnippetList,
    VersionList,
    comparison_id,
)
from saewatch.models import TEXT_FIELDS, ComparisonResult, DriftReport, TextField

logger = logging.getLogger(__name__)

JSON = "application/json"
# Keys holding event text, wherever they occur in a response; emptied when snippets are off.
SNIPPET_LIST_KEYS = frozenset({"examples", "examples_baseline", "examples_candidate"})
SNIPPET_TEXT_KEYS = frozenset({"snippet"})
MAX_PAGE = 500  # comparisons per page
MAX_FEATURE_PAGE = 100  # features per page of one diff (top_up + top_down hold at most 100)
MAX_RETRIEVAL = 200
MAX_EXAMPLES = 50

_FIELDS = ("prompt", "response")
_OFFSET = Param("offset", "query", "integer", "Items to skip.", default=0, minimum=0)
_FIELD = Param("field", "query", "string", "Only this text field.", enum=_FIELDS)
_FIELD_DEFAULT = Param("field", "query", "string", "Text field.", default="response", enum=_FIELDS)
_MODEL_ID = Param("model_id", "query", "string", "Only this model_id.")
_VERSION = Param("model_version", "query", "string", "Only this model version.")
_KIND = Param("kind", "query", "string", "Comparison kind.", enum=("versions", "latest", "window"))
_VERDICT = Param(
    "verdict",
    "query",
    "string",
    "Only this verdict.",
    enum=("insufficient_data", "no_drift", "drift"),
)
_COMPARISON_ID = Param("comparison_id", "path", "string", "Id from the list.", required=True)
_DIRECTION = Param(
    "direction", "query", "string", "Which features.", default="both", enum=("up", "down", "both")
)
_FEATURE = Param("feature", "path", "integer", "SAE feature id.", required=True, minimum=0)
_FEATURES = Param(
    "features", "query", "integer-list", "Comma-separated feature ids.", required=True, minimum=0
)
_MODE = Param(
    "mode",
    "query",
    "string",
    "Any (or) or all (and) of the features.",
    default="or",
    enum=("or", "and"),
)
_K = Param("k", "query", "integer", "How many.", default=5, minimum=1, maximum=MAX_EXAMPLES)


def _page_limit(default: int, maximum: int) -> Param:
    return Param(
        "limit", "query", "integer", "Page size.", default=default, minimum=1, maximum=maximum
    )


def _required(param: Param) -> Param:
    return dataclasses.replace(param, required=True)


def redact_snippets(value: Any) -> Any:
    """Copy of a JSON-ready value with all event text removed.

    >>> redact_snippets({"feature": 3, "examples": [{"text": "secret"}], "snippet": "hi"})
    {'feature': 3, 'examples': [], 'snippet': None}
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in SNIPPET_LIST_KEYS:
                out[key] = []
            elif key in SNIPPET_TEXT_KEYS:
                out[key] = None
            else:
                out[key] = redact_snippets(item)
        return out
    if isinstance(value, list):
        return [redact_snippets(item) for item in value]
    return value


def feature_labels(report: DriftReport | None) -> dict[int, str]:
    """Labels the diff attached to features of ``report`` (the state does not know labels)."""
    labels: dict[int, str] = {}
    for result in report.comparisons if report is not None else ():
        for delta in (*result.top_up, *result.top_down):
            if delta.label:
                labels[delta.feature] = delta.label
    return labels


class JsonApi:
    """The ``/api/v1`` handlers over a :class:`ReportHolder` and optional :class:`StateQueries`.

    Parameters
    ----------
    holder
        Source of the latest report and of the state view published with it.
    web
        ``serve_snippets`` decides whether event text leaves the process.
    state
        Fixed answers for the feature, examples and retrieval endpoints (a frozen
        :class:`~saewatch.views.StateView`, say); without it they use the holder's latest view,
        and answer 503 until one is published.
    """

    def __init__(
        self, holder: ReportHolder, web: WebSettings, state: StateQueries | None = None
    ) -> None:
        self.holder = holder
        self.web = web
        self.state = state

    def json_response(self, model: BaseModel, status: int = 200) -> Response:
        """Encode ``model``, honouring ``serve_snippets``."""
        data = model.model_dump(mode="json")
        if not self.web.serve_snippets:
            data = redact_snippets(data)
        return Response(status, json.dumps(data, separators=(",", ":")).encode(), JSON)

    def _report(self) -> DriftReport:
        report = self.holder.latest
        if report is None:
            raise Unavailable("no drift report yet: the first diff runs after enough events")
        return report

    def _state(self) -> StateQueries:
        return self.state_queries()

    def state_queries(self) -> StateQueries:
        """The fixed state queries, else the latest view (503 until one is published). The
        feature route lives in :mod:`.features`, which joins it with the feature's card."""
        if self.state is not None:
            return self.state
        view = self.holder.view  # one reference read: never waits for the consumer
        if view is None:
            raise Unavailable("state queries are not attached to this server yet: a state view "
                              "is published with each drift report")
        return view

    def comparisons(self, request: Request) -> Response:
        report = self._report()
        p = request.params
        wanted = {k: p[k] for k in ("model_id", "field", "kind", "verdict") if p[k] is not None}
        matching = [
            r
            for r in report.comparisons
            if all(
                (r.verdict if k == "verdict" else getattr(r.key, k)) == v for k, v in wanted.items()
            )
        ]
        offset, limit = _int(p, "offset"), _int(p, "limit")
        page = [ComparisonSummary.of(r) for r in matching[offset : offset + limit]]
        return self.json_response(
            ComparisonList(
                generated_at=report.generated_at,
                total=len(matching),
                offset=offset,
                limit=limit,
                items=page,
            )
        )

    def _find(self, cid: str) -> ComparisonResult:
        for result in self._report().comparisons:
            if comparison_id(result.key) == cid:
                return result
        raise NotFound(f"no comparison with id {cid!r}; list them at /api/v1/comparisons")

    def comparison(self, request: Request) -> Response:
        p = request.params
        result = self._find(str(p["comparison_id"]))
        direction = str(p["direction"])
        ranked: list[RankedFeature] = []
        if direction in ("up", "both"):
            ranked += [RankedFeature(rank=i, delta=d) for i, d in enumerate(result.top_up, 1)]
        if direction in ("down", "both"):
            ranked += [RankedFeature(rank=i, delta=d) for i, d in enumerate(result.top_down, 1)]
        offset, limit = _int(p, "offset"), _int(p, "limit")
        history = [
            HistoryPointOut(at=h.at, drift_score=h.drift_score)
            for h in self.holder.history(result.key)
        ]
        return self.json_response(
            ComparisonDiff(
                comparison=ComparisonSummary.of(result),
                descriptors=list(result.descriptors),
                themes=list(result.themes),
                direction=direction,
                total=len(ranked),
                offset=offset,
                limit=limit,
                features=ranked[offset : offset + limit],
                history=history,
                narrative=self.holder.narrative(result.key),
            )
        )

    def versions(self, request: Request) -> Response:
        report = self._report()
        return self.json_response(
            VersionList(generated_at=report.generated_at, items=list(report.versions))
        )

    def clusters(self, request: Request) -> Response:
        report = self._report()
        model_id, version = request.params["model_id"], request.params["model_version"]
        items = [
            c
            for c in report.clusters
            if (model_id is None or c.model_id == model_id)
            and (version is None or c.model_version == version)
        ]
        return self.json_response(ClusterList(generated_at=report.generated_at, items=items))

    def examples(self, request: Request) -> Response:
        if not self.web.serve_snippets:
            raise NotFound("snippets are switched off on this server (web.serve_snippets)")
        p = request.params
        feature, k = _int(p, "feature"), _int(p, "k")
        field = _field(p)
        model_id, version = str(p["model_id"]), str(p["model_version"])
        state = self._state()
        try:
            items = state.examples(feature, model_id, version, field, k)
        except (SaewatchError, LookupError) as exc:
            raise NotFound(f"examples of feature {feature}: {exc}") from exc
        except ValueError as exc:
            raise BadRequest(f"examples of feature {feature}: {exc}") from exc
        return self.json_response(
            SnippetList(
                feature=feature, model_id=model_id, model_version=version, field=field, items=items
            )
        )

    def retrieve(self, request: Request) -> Response:
        p = request.params
        features: list[int] = p["features"]  # type: ignore[assignment]
        mode: Literal["and", "or"] = "and" if p["mode"] == "and" else "or"
        state = self._state()
        try:
            hits = state.retrieve(
                features,
                mode=mode,
                model_id=_opt_str(p, "model_id"),
                model_version=_opt_str(p, "model_version"),
                field=_field(p),
                limit=_int(p, "limit"),
            )
        except (SaewatchError, LookupError) as exc:
            raise NotFound(f"retrieval: {exc}") from exc
        except ValueError as exc:
            raise BadRequest(f"retrieval: {exc}") from exc
        return self.json_response(
            RetrievalResult(features=features, mode=mode, items=hits)
        )

    def routes(self) -> list[Route]:
        """The JSON API's route table."""
        return [*self._report_routes(), *self._state_routes()]

    def _report_routes(self) -> list[Route]:
        return [
            Route(
                "comparisons",
                "/api/v1/comparisons",
                "Comparisons of the latest report (paged)",
                self.comparisons,
                schema=ComparisonList,
                params=(_MODEL_ID, _FIELD, _KIND, _VERDICT, _OFFSET, _page_limit(50, MAX_PAGE)),
            ),
            Route(
                "comparison",
                "/api/v1/comparisons/{comparison_id}",
                "One comparison: statistics, text descriptors (moved first, in words), themes "
                "of co-firing features, a page of top features with labels and examples, drift "
                "score history",
                self.comparison,
                schema=ComparisonDiff,
                params=(_COMPARISON_ID, _DIRECTION, _OFFSET, _page_limit(20, MAX_FEATURE_PAGE)),
            ),
            Route(
                "versions",
                "/api/v1/versions",
                "Documents seen per model version and field",
                self.versions,
                schema=VersionList,
            ),
            Route(
                "clusters",
                "/api/v1/clusters",
                "Streaming-cluster shares per model version",
                self.clusters,
                schema=ClusterList,
                params=(_MODEL_ID, _VERSION),
            ),
        ]

    def _state_routes(self) -> list[Route]:
        return [
            Route(
                "examples",
                "/api/v1/features/{feature}/examples",
                "Example snippets of one feature in one version",
                self.examples,
                schema=SnippetList,
                params=(_FEATURE, _required(_MODEL_ID), _required(_VERSION), _FIELD_DEFAULT, _K),
            ),
            Route(
                "retrieve",
                "/api/v1/retrieve",
                "Recent events by features and version",
                self.retrieve,
                schema=RetrievalResult,
                params=(
                    _FEATURES,
                    _MODE,
                    _MODEL_ID,
                    _VERSION,
                    _FIELD_DEFAULT,
                    _page_limit(20, MAX_RETRIEVAL),
                ),
            ),
        ]


# The router has checked each parameter against its declared type; these narrow the union.
def _int(params: Mapping[str, ParamValue], name: str) -> int:
    value = params[name]
    if not isinstance(value, int):
        raise BadRequest(f"{name}: expected an integer, got {value!r}")
    return value


def _opt_str(params: Mapping[str, ParamValue], name: str) -> str | None:
    value = params[name]
    return None if value is None else str(value)


def _field(params: Mapping[str, ParamValue]) -> TextField:
    value = params["field"]
    if value not in TEXT_FIELDS:
        raise BadRequest(f"field: expected one of {', '.join(TEXT_FIELDS)}, got {value!r}")
    return "prompt" if value == "prompt" else "response"
