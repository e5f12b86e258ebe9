"""The three Kafka requests of the security probe (:mod:`saewatch.source.security`), by hand.

ApiVersions, SaslHandshake and SaslAuthenticate in their oldest versions every Kafka broker from
2.0 to 4.x still serves (non-flexible encoding, request header v1, response header v0). Only what
the probe reads is decoded.

>>> frame = request(API_VERSIONS, 0, 7, b"")
>>> frame[:4] == (len(frame) - 4).to_bytes(4, "big"), frame[4:12].hex()
(True, '0012000000000007')
"""

from __future__ import annotations

import socket
import struct

from saewatch.source.exceptions import SourceError

API_VERSIONS = 18
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
CLIENT_ID = "saewatch-probe"
# A Kafka response to these requests is a few hundred bytes; a larger "size" is not Kafka talking
# (e.g. TLS bytes read as a length).
MAX_RESPONSE_BYTES = 1 << 20
# The first bytes of a TLS record holding an alert (content type 21, version 3.x): what a TLS
# listener sends back to a plaintext request.
TLS_ALERT_PREFIX = b"\x15\x03"


class NotKafkaReplyError(SourceError):
    """The peer answered, but not with a Kafka response (``tls`` is True for a TLS alert).

    >>> NotKafkaReplyError("the peer answered with a TLS alert", tls=True).tls
    True
    """

    def __init__(self, message: str, *, tls: bool) -> None:
        super().__init__(message)
        self.tls = tls


def string(value: str) -> bytes:
    """A Kafka STRING: int16 length, UTF-8 bytes."""
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def blob(value: bytes) -> bytes:
    """A Kafka BYTES: int32 length, the bytes."""
    return struct.pack(">i", len(value)) + value


def request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A size-prefixed request with header v1 (api key, version, correlation id, client id)."""
    header = struct.pack(">hhi", api_key, version, correlation_id) + string(CLIENT_ID)
    return struct.pack(">i", len(header) + len(body)) + header + body


class Reader:
    """Reads big-endian Kafka primitives from a response body, front to back.

    >>> r = Reader(b"\\x00\\x21" + string("SCRAM-SHA-512") + b"\\xff\\xff")
    >>> r.int16(), r.string(), r.string()
    (33, 'SCRAM-SHA-512', None)
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._data, self._at)
        self._at += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        """A (nullable) STRING; ``None`` for length -1."""
        size = self.int16()
        if size < 0:
            return None
        value = self._data[self._at : self._at + size].decode("utf-8", errors="replace")
        self._at += size
        return value

    def blob(self) -> bytes:
        size = self.int32()
        value = self._data[self._at : self._at + max(size, 0)]
        self._at += max(size, 0)
        return value

    def strings(self) -> list[str]:
        return [s for s in (self.string() for _ in range(max(self.int32(), 0))) if s is not None]


def exchange(sock: socket.socket, api_key: int, version: int, body: bytes,
             correlation_id: int) -> Reader:
    """Send one request and read its response body.

    Raises
    ------
    NotKafkaReplyError
        If the reply is a TLS alert or has no plausible Kafka frame.
    OSError
        If the connection fails or closes (``ConnectionError``), or times out.
    """
    sock.sendall(request(api_key, version, correlation_id, body))
    head = _read_exactly(sock, 4)
    if head.startswith(TLS_ALERT_PREFIX):
        raise NotKafkaReplyError("the peer answered with a TLS alert", tls=True)
    (size,) = struct.unpack(">i", head)
    if not 4 <= size <= MAX_RESPONSE_BYTES:
        raise NotKafkaReplyError(f"the peer's reply is not a Kafka frame (size {size})", tls=False)
    frame = _read_exactly(sock, size)
    reader = Reader(frame)
    if reader.int32() != correlation_id:
        raise NotKafkaReplyError("the peer answered another request", tls=False)
    return reader


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data
