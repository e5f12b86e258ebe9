"""A tiny, typed route table: one list drives both request dispatch and the OpenAPI document.

GET (and HEAD) only. Paths are OpenAPI templates (``/api/v1/features/{feature}``); each parameter is
declared once and validated with a clear 400 message before a handler runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from saewatch.export.exceptions import BadRequest, NotFound

logger = logging.getLogger(__name__)

ParamType = Literal["integer", "string", "boolean", "integer-list"]
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# A feature query of more than this many ids is a mistake, not a retrieval.
MAX_LIST_ITEMS = 64

ParamValue = int | str | bool | list[int] | None


@dataclass(frozen=True)
class Param:
    """One path or query parameter: how it is parsed, checked and documented."""

    name: str
    location: Literal["path", "query"]
    type: ParamType
    description: str
    default: ParamValue = None
    required: bool = False
    enum: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, raw: str | None) -> ParamValue:
        """Parse ``raw`` (``None`` when absent) or raise :class:`BadRequest` saying why."""
        if raw is None or raw == "":
            if self.required:
                raise BadRequest(f"parameter {self.name!r} is required")
            return self.default
        if self.type == "integer":
            return self._bounded(self._int(raw))
        if self.type == "integer-list":
            items = [self._bounded(self._int(part)) for part in raw.split(",") if part.strip()]
            if not items or len(items) > MAX_LIST_ITEMS:
                raise BadRequest(f"{self.name!r}: give 1 to {MAX_LIST_ITEMS} comma-separated ids")
            return items
        if self.type == "boolean":
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise BadRequest(f"{self.name!r} must be true or false, not {raw!r}")
        if self.enum and raw not in self.enum:
            raise BadRequest(f"{self.name!r} must be one of {', '.join(self.enum)}, not {raw!r}")
        return raw

    def _int(self, raw: str) -> int:
        try:
            return int(raw.strip())
        except ValueError:
            raise BadRequest(f"{self.name!r} must be an integer, not {raw!r}") from None

    def _bounded(self, value: int) -> int:
        if self.minimum is not None and value < self.minimum:
            raise BadRequest(f"{self.name!r} must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise BadRequest(f"{self.name!r} must be at most {self.maximum}")
        return value


@dataclass(frozen=True)
class Request:
    """What a handler sees: validated parameters and the raw headers."""

    path: str
    params: Mapping[str, ParamValue]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    """What a handler returns; the server adds the common headers."""

    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """One GET endpoint.

    ``schema`` is the pydantic model of a JSON response (documented in OpenAPI); ``public`` routes
    skip bearer-token authentication.
    """

    name: str
    path: str
    summary: str
    handler: Handler
    content_type: str = "application/json"
    schema: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    public: bool = False
    tag: str = "api"

    def pattern(self) -> re.Pattern[str]:
        """The path template as an anchored regular expression with one group per parameter."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{regex}$")


class Router:
    """Matches a request path against the route table.

    >>> def ok(request: Request) -> Response:
    ...     return Response(200, str(request.params["feature"]).encode(), "text/plain")
    >>> router = Router([Route("feature", "/f/{feature}", "One feature", ok,
    ...     params=(Param("feature", "path", "integer", "id", required=True, minimum=0),))])
    >>> route, request = router.resolve("/f/42", {}, {})
    >>> route.handler(request).body
    b'42'
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._compiled = [(route.pattern(), route) for route in self.routes]

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for ``path`` and its raw path parameters, or ``None``."""
        for pattern, route in self._compiled:
            found = pattern.match(path)
            if found is not None:
                return route, found.groupdict()
        return None

    def resolve(
        self, path: str, query: Mapping[str, Sequence[str]], headers: Mapping[str, str]
    ) -> tuple[Route, Request]:
        """Route and validated :class:`Request`; raises ``LookupError`` for an unknown path."""
        matched = self.match(path)
        if matched is None:
            raise LookupError(path)
        route, raw_path = matched
        unknown = set(query) - {p.name for p in route.params if p.location == "query"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        params: dict[str, ParamValue] = {}
        for param in route.params:
            if param.location == "path":
                try:
                    params[param.name] = param.parse(raw_path.get(param.name))
                except BadRequest as exc:  # a path that names nothing is not found, not "bad"
                    raise NotFound(str(exc)) from exc
            else:
                values = query.get(param.name)
                params[param.name] = param.parse(values[-1] if values else None)
        return route, Request(path=path, params=params, headers=headers)
