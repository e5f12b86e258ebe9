"""The OpenAPI 3.1 document, generated from the route table and the pydantic response models.

Because dispatch and documentation read the same :class:`~saewatch.export.web.routing.Route` list, a
route cannot exist without being documented.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from saewatch import __version__
from saewatch.export.web.routing import Param, Route
from saewatch.export.web.schemas import Problem

logger = logging.getLogger(__name__)

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "Invalid parameter",
    "401": "Missing or wrong bearer token",
    "404": "Not found",
    "503": "No report or state yet",
}


def _param_schema(param: Param) -> dict[str, Any]:
    if param.type == "integer-list":
        schema: dict[str, Any] = {"type": "string", "pattern": r"^\d+(,\d+)*$"}
    else:
        schema = {"type": param.type}
    if param.enum:
        schema["enum"] = list(param.enum)
    if param.type == "integer":
        if param.minimum is not None:
            schema["minimum"] = param.minimum
        if param.maximum is not None:
            schema["maximum"] = param.maximum
    if param.default is not None:
        schema["default"] = param.default
    return schema


def _operation(route: Route, schemas: dict[str, str]) -> dict[str, Any]:
    if route.schema is not None:
        content = {route.content_type: {"schema": {"$ref": schemas[route.schema.__name__]}}}
    else:
        content = {route.content_type.split(";")[0]: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}}
    problem = {"application/json": {"schema": {"$ref": schemas[Problem.__name__]}}}
    for status, text in _ERRORS.items():
        if status == "401" and route.public:
            continue
        responses[status] = {"description": text, "content": problem}
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required or p.location == "path",
                "description": p.description,
                "schema": _param_schema(p),
            }
            for p in route.params
        ],
        "responses": responses,
    }
    if route.public:
        operation["security"] = []
    return operation


def build_openapi(routes: Sequence[Route], bearer: bool) -> dict[str, Any]:
    """OpenAPI 3.1 document of ``routes``; ``bearer`` adds the bearer-token security scheme.

    >>> from saewatch.export.web.routing import Response, Route
    >>> doc = build_openapi([Route("healthy", "/-/healthy", "Liveness",
    ...                            lambda r: Response(200, b"", "text/plain"), public=True)], False)
    >>> doc["openapi"], list(doc["paths"])
    ('3.1.0', ['/-/healthy'])
    """
    models: list[type[BaseModel]] = [Problem]
    models += [r.schema for r in routes if r.schema is not None and r.schema not in models]
    refs, defs = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    schemas = {m.__name__: refs[(m, "serialization")]["$ref"] for m in models}
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.path, {})["get"] = _operation(route, schemas)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "saewatch",
            "version": __version__,
            "description": "Behavioural drift of deployed LLMs in sparse-autoencoder features.",
        },
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
    if bearer:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
