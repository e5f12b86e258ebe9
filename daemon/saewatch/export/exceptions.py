"""Errors of the export stage."""

from saewatch.errors import SaewatchError


class ExportError(SaewatchError):
    """Something in the export stage failed."""


class ServerStartError(ExportError):
    """The HTTP server could not bind web.listen_address; free the port or choose another one."""


class HttpError(ExportError):
    """A request cannot be answered; ``status`` is the HTTP status to send (message = detail)."""

    status = 500
    title = "Internal Server Error"


class BadRequest(HttpError):
    """A query parameter is missing or invalid; the message names it and what is allowed."""

    status = 400
    title = "Bad Request"


class NotFound(HttpError):
    """No such route, comparison or feature; list /api/v1/comparisons or see /api/openapi.json."""

    status = 404
    title = "Not Found"


class Unavailable(HttpError):
    """The data is not there yet (no report, no state attached); retry after the first diff."""

    status = 503
    title = "Service Unavailable"
