"""One HTTP port for everything: ``/metrics``, probes, the JSON API, OpenAPI and the report page.

A stdlib :class:`~http.server.ThreadingHTTPServer` on its own daemon thread: requests only read
the latest immutable report, the frozen state view published with it (for a few API routes) and
the registry, so serving never blocks the consumer nor touches the GPU. With ``web.bearer_token``
(or ``web.bearer_token_file``) set, every route except ``/-/healthy`` and ``/-/ready`` requires
``Authorization: Bearer <token>`` (compared in constant time); with ``web.tls_cert_file`` and
``web.tls_key_file`` the port speaks HTTPS only (:mod:`.transport`).
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder

from saewatch.config import WebSettings
from saewatch.export.base import ReportHolder, StateQueries
from saewatch.export.exceptions import HttpError, NotFound, ServerStartError
from saewatch.export.web.api import JSON, JsonApi
from saewatch.export.web.behaviour_writes import MAX_BODY_BYTES, BehaviourChanges, handle_write
from saewatch.export.web.behaviour_writes import document as document_writes
from saewatch.export.web.behaviours import BehaviourEndpoints
from saewatch.export.web.features import FeatureEndpoints
from saewatch.export.web.openapi import build_openapi
from saewatch.export.web.report import STATIC_FILES, render_report, static_file
from saewatch.export.web.routing import Param, Request, Response, Route, Router
from saewatch.export.web.schemas import Probe, Problem
from saewatch.export.web.transport import (
    REQUEST_TIMEOUT_S,
    SHUTDOWN_POLL_S,
    ThreadedServer,
    tls_context,
)
from saewatch.models.cards import FeatureCards

logger = logging.getLogger(__name__)

ReadinessProbe = Callable[[], tuple[bool, str]]  # e.g. saewatch.runtime.Readiness
HTML = "text/html; charset=utf-8"
MIN_GZIP_BYTES = 1024
# Scripts and styles come from this server only; inline styles carry the bar widths.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
class ExporterServer:
    """The exporter's HTTP server.

    Parameters
    ----------
    web
        Listen address, bearer token, snippet policy.
    registry
        Served at ``/metrics`` (register the collectors on it; the server adds
        ``saewatch_http_requests_total``).
    holder
        Latest report and state view, for the API and the report page.
    state
        Optional fixed :class:`StateQueries` for feature, examples and retrieval routes; by
        default they answer from the view published with the latest report.
    readiness
        Returns ``(ready, reason)`` for ``/-/ready``; default: ready once a report exists.
    cards
        Feature cards of the SAE, served with each feature's live detail (JSON and page).
    """

    def __init__(
        self,
        web: WebSettings,
        registry: CollectorRegistry,
        holder: ReportHolder,
        state: StateQueries | None = None,
        readiness: ReadinessProbe | None = None,
        cards: FeatureCards | None = None,
        behaviour_changes: BehaviourChanges | None = None,
    ) -> None:
        self.web = web
        self.registry = registry
        self.holder = holder
        self.readiness = readiness or self._report_ready
        self.api = JsonApi(holder, web, state)
        self.features = FeatureEndpoints(self.api, cards, CSP)
        self.router = Router(self._routes())
        token = web.token()
        self._token = token.encode()
        self._tls = tls_context(web)
        self.behaviour_changes = behaviour_changes  # POST/DELETE /api/v1/behaviours
        doc = build_openapi(self.router.routes, bool(token))
        document_writes(doc["paths"])
        self._openapi = json.dumps(doc).encode()
        self._requests = Counter(
            "http_requests",
            "HTTP requests served, by route and status code",
            ["handler", "code"],
            namespace="saewatch",
            registry=registry,
        )
        for route in self.router.routes:
            self._requests.labels(handler=route.name, code="200")
        self._httpd: ThreadedServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind ``web.listen_address`` and serve on a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        host, port = self.web.host_port
        handler = type("SaewatchHandler", (_Handler,), {"exporter": self})
        server_cls = type(
            "SaewatchServer",
            (ThreadedServer,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        try:
            self._httpd = server_cls((host, port), handler)
        except OSError as exc:
            raise ServerStartError(f"cannot listen on {self.web.listen_address}: {exc}") from exc
        if self._tls is not None:  # handshakes happen per connection, see transport.py
            self._httpd.socket = self._tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(SHUTDOWN_POLL_S,),
            name="saewatch-http",
            daemon=True,
        )
        self._thread.start()
        logger.info("serving /metrics, API and report on %s/", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting requests, end open connections and close the socket (idempotent)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._httpd, self._thread = None, None
        logger.info("HTTP server stopped")

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the real port when the configured one was 0."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def __enter__(self) -> ExporterServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- routes ---------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        ops = "operations"
        static = Param(
            "name", "path", "string", "File name.", required=True, enum=tuple(STATIC_FILES)
        )
        return [
            Route(
                "report", "/", "The report page", self._report_page, content_type=HTML, tag="report"
            ),
            Route(
                "static",
                "/static/{name}",
                "Stylesheet and script of the report page",
                self._static,
                content_type="text/plain",
                params=(static,),
                tag="report",
            ),
            Route(
                "metrics",
                "/metrics",
                "Prometheus exposition",
                self._metrics,
                content_type="text/plain; version=0.0.4",
                tag=ops,
            ),
            Route(
                "healthy",
                "/-/healthy",
                "Liveness",
                self._healthy,
                schema=Probe,
                public=True,
                tag=ops,
            ),
            Route(
                "ready",
                "/-/ready",
                "Readiness: model loaded, partitions assigned, state restored",
                self._ready,
                schema=Probe,
                public=True,
                tag=ops,
            ),
            Route(
                "openapi", "/api/openapi.json", "This OpenAPI document", self._openapi_doc, tag=ops
            ),
            *self.api.routes(),
            *self.features.routes(),
            *BehaviourEndpoints(self.api).routes(),
        ]

    def _report_ready(self) -> tuple[bool, str]:
        if self.holder.latest is None:
            return False, "no drift report computed yet"
        return True, "ok"

    def _healthy(self, request: Request) -> Response:
        return self.api.json_response(Probe(status="ok", reason="serving"))

    def _ready(self, request: Request) -> Response:
        ready, reason = self.readiness()
        probe = Probe(status="ok" if ready else "unavailable", reason=reason)
        return self.api.json_response(probe, status=200 if ready else 503)

    def _openapi_doc(self, request: Request) -> Response:
        return Response(200, self._openapi, JSON)

    def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, encoder(self.registry), content_type)

    def _static(self, request: Request) -> Response:
        name = str(request.params["name"])
        return Response(
            200, static_file(name), STATIC_FILES[name], {"Cache-Control": "max-age=300"}
        )

    def _report_page(self, request: Request) -> Response:
        html = render_report(self.holder.latest, self.holder.history, self.web.serve_snippets,
                             self.holder.narrative)
        return Response(200, html.encode(), HTML, {"Content-Security-Policy": CSP})

    # -- dispatch -------------------------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        """Whether the request carries the configured bearer token (always, without one)."""
        if not self._token:
            return True
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self._token
        )

    def dispatch(self, raw_path: str, headers: dict[str, str]) -> tuple[str, Response]:
        """Answer a GET of ``raw_path``; returns the route name (for metrics) and the response."""
        parts = urlsplit(raw_path)
        matched = self.router.match(parts.path)
        name = matched[0].name if matched else "unknown"
        if not (matched and matched[0].public) and not self.authorized(headers):
            return name, _problem(
                401,
                "Unauthorized",
                "send Authorization: Bearer <token>",
                {"WWW-Authenticate": 'Bearer realm="saewatch"'},
            )
        try:
            if matched is None:
                raise NotFound(f"no route {parts.path!r}; see /api/openapi.json")
            route, request = self.router.resolve(
                parts.path, parse_qs(parts.query, keep_blank_values=True), headers
            )
            return name, route.handler(request)
        except HttpError as exc:
            return name, _problem(exc.status, exc.title, str(exc))
        except Exception:  # noqa: BLE001 (a fault of ours: answered 500 and logged, not a hang-up)
            logger.exception("error answering %s", parts.path)
            return name, _problem(500, "Internal Server Error",
                                  "saewatch failed to answer; the traceback is in its log")

    def dispatch_write(self, method: str, raw_path: str, headers: dict[str, str],
                       body: bytes) -> tuple[str, Response]:
        """Answer a POST or DELETE (only the behaviour routes take one), token required."""
        path = urlsplit(raw_path).path
        name = f"behaviour_{'add' if method == 'POST' else 'remove'}"
        if not self.authorized(headers):
            return name, _problem(401, "Unauthorized", "send Authorization: Bearer <token>",
                                  {"WWW-Authenticate": 'Bearer realm="saewatch"'})
        try:
            status, answer = handle_write(self.behaviour_changes, method, path, body)
        except HttpError as exc:
            return name, _problem(exc.status, exc.title, str(exc))
        return name, Response(status, json.dumps(answer).encode(), JSON)

    def count(self, name: str, status: int) -> None:
        self._requests.labels(handler=name, code=str(status)).inc()


def _problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    body = Problem(status=status, title=title, detail=detail).model_dump_json().encode()
    return Response(status, body, "application/problem+json", headers or {})


class _Handler(BaseHTTPRequestHandler):
    exporter: ExporterServer
    server_version = "saewatch"
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S
    # TCP_NODELAY: headers and body go out in two writes, and on a keep-alive connection (what
    # Prometheus keeps open) Nagle's algorithm held the body until the client's delayed ACK:
    # every scrape took ~40 ms longer (41.9 ms p50 against 1.4 ms on fresh connections).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._respond(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802 (load balancers probe with HEAD)
        self._respond(send_body=False)

    def do_POST(self) -> None:  # noqa: N802 (define a watched behaviour)
        self._respond(send_body=True, method="POST")

    def do_DELETE(self) -> None:  # noqa: N802 (remove one)
        self._respond(send_body=True, method="DELETE")

    def _respond(self, send_body: bool, method: str = "GET") -> None:
        server = cast(ThreadedServer, self.server)
        with server.replying(self.connection) as closing:
            self._reply(send_body, closing, method)

    def _reply(self, send_body: bool, closing: bool, method: str = "GET") -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if method == "GET":
            name, response = self.exporter.dispatch(self.path, headers)
        else:
            size = int(headers.get("content-length", "0") or 0)
            if size > MAX_BODY_BYTES:
                name, response = "behaviour_write", _problem(
                    413, "Content Too Large", f"send at most {MAX_BODY_BYTES} bytes of examples")
                closing = True  # the unread body cannot be skipped on this connection
            else:
                name, response = self.exporter.dispatch_write(method, self.path, headers,
                                                              self.rfile.read(size))
        # Counted before the reply goes out: a client that reads /metrics right after its
        # response must see its own request (counting afterwards raced the next scrape).
        self.exporter.count(name, response.status)
        body = response.body
        extra = dict(response.headers)
        if len(body) >= MIN_GZIP_BYTES and "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
            extra["Vary"] = "Accept-Encoding"
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        extra.setdefault("Cache-Control", "no-store")
        if closing:  # the server is stopping: this is the connection's last reply
            extra["Connection"] = "close"
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s %s", self.address_string(), format % args)
