"""The socket side of the exporter's HTTP server: the standard library's threading server with a
cap on concurrent connections, tracking of open keep-alive connections (so ``stop`` can end them),
and TLS with per-connection handshakes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

from saewatch.config import WebSettings
from saewatch.export.exceptions import ServerStartError

logger = logging.getLogger(__name__)

# A client that sends nothing for this long is dropped, so slow clients cannot pin threads.
REQUEST_TIMEOUT_S = 30.0
# serve_forever checks for shutdown this often; stop() waits at most this long for it.
SHUTDOWN_POLL_S = 0.1
# Requests served at once; scrapes and page views are few, a flood must not spawn threads.
MAX_CONCURRENT_REQUESTS = 32


class ThreadedServer(ThreadingHTTPServer):
    """At most MAX_CONCURRENT_REQUESTS connections served at once, each on its own thread.

    >>> from http.server import BaseHTTPRequestHandler
    >>> server = ThreadedServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    >>> server.connections, server.server_address[1] > 0
    (set(), True)
    >>> server.close_connections(); server.server_close()
    """

    daemon_threads = True
    allow_reuse_address = True

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        self._lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self._replying: set[socket.socket] = set()
        self.closing = False

    def process_request(self, request: Any, client_address: Any) -> None:
        # Back-pressure instead of one thread per connection without limit: the accept loop
        # waits for a free slot (slots free within REQUEST_TIMEOUT_S at worst).
        self._slots.acquire()
        with self._lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket) and not _handshake(request, client_address):
                self.shutdown_request(request)
                return
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.connections.discard(request)
            self._slots.release()

    def close_connections(self) -> None:
        """End every open keep-alive connection; without this a stopped server went on
        answering on connections it had already accepted. An idle one (its thread waiting for
        the next request) is shut down now; one whose reply is being written gets
        ``Connection: close`` and ends after it (see :meth:`replying`)."""
        with self._lock:
            self.closing = True
            idle = self.connections - self._replying
        for connection in idle:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed by the client meanwhile
                pass

    @contextmanager
    def replying(self, connection: socket.socket) -> Iterator[bool]:
        """Mark ``connection`` busy while a reply is written; yields whether the server is
        closing (the reply then says ``Connection: close``)."""
        with self._lock:
            self._replying.add(connection)
            closing = self.closing
        try:
            yield closing
        finally:
            with self._lock:
                self._replying.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints tracebacks to stderr; route them through logging instead.
        logger.exception("unhandled error serving %s", client_address)


def _handshake(connection: ssl.SSLSocket, client_address: Any) -> bool:
    """The TLS handshake, on the connection's own thread: done in ``accept`` it would let one
    slow or silent client stall the accept loop for everyone."""
    connection.settimeout(REQUEST_TIMEOUT_S)
    try:
        connection.do_handshake()
    except (ssl.SSLError, OSError) as exc:  # plain HTTP to the TLS port, a bad client cert, ...
        logger.debug("TLS handshake with %s failed: %s", client_address, exc)
        return False
    return True


def tls_context(web: WebSettings) -> ssl.SSLContext | None:
    """The server's TLS context from ``web.tls_*`` (None: plain HTTP)."""
    if web.tls_cert_file is None or web.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(web.tls_cert_file, web.tls_key_file)
        if web.tls_client_ca_file is not None:
            context.load_verify_locations(web.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (ssl.SSLError, OSError) as exc:
        raise ServerStartError(
            f"web.tls_cert_file / web.tls_key_file / web.tls_client_ca_file: cannot load "
            f"({exc}); they must be PEM files, the key matching the certificate"
        ) from exc
    return context
