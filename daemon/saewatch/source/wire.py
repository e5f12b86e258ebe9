"""The three Kafka requests of the security probe (:mod:`saewatch.source.security`).

ApiVersions v0, SaslHandshake v1 and SaslAuthenticate v1: the oldest versions every Kafka broker
from 2.0 to 4.x still serves (non-flexible encoding, request header v1, response header v0).
kafka-python's own protocol classes encode and decode them: the messages of
:mod:`kafka.protocol.metadata` and :mod:`kafka.protocol.sasl`, framed, headed and matched to
their replies by :class:`kafka.protocol.parser.KafkaProtocol`, the socket-free codec its own
connections use. By hand here: only the socket reads and writes, and the look at a reply's first
bytes for a TLS alert, which the codec would only see as an absurd frame size.

>>> ours, broker = socket.socketpair()
>>> reply = bytes.fromhex("00000011" "00000002" "0021" "00000001" "0005") + b"PLAIN"
>>> broker.sendall(reply)
>>> sasl_handshake(ours, "SCRAM-SHA-512", correlation_id=2)
(33, ['PLAIN'])
>>> broker.recv(64)[4:12].hex()  # api key 17, version 1, correlation id 2
'0011000100000002'
>>> ours.close(); broker.close()
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import kafka.errors
from kafka.protocol.metadata import ApiVersionsRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from saewatch.source.exceptions import SourceError

CLIENT_ID = "saewatch-probe"
# A Kafka response to these requests is a few hundred bytes; a larger "size" is not Kafka talking
# (e.g. TLS bytes read as a length).
MAX_RESPONSE_BYTES = 1 << 20
# The first bytes of a TLS record holding an alert (content type 21, version 3.x): what a TLS
# listener sends back to a plaintext request.
TLS_ALERT_PREFIX = b"\x15\x03"
_FRAME_SIZE_BYTES = 4
_RECV_BYTES = 1 << 16


class NotKafkaReplyError(SourceError):
    """The peer answered, but not with a Kafka response (``tls`` is True for a TLS alert).

    >>> NotKafkaReplyError("the peer answered with a TLS alert", tls=True).tls
    True
    """

    def __init__(self, message: str, *, tls: bool) -> None:
        super().__init__(message)
        self.tls = tls


def api_versions(sock: socket.socket, correlation_id: int) -> None:
    """Send ApiVersions v0 and check that a Kafka response comes back (its content is unused)."""
    exchange(sock, ApiVersionsRequest(version=0), correlation_id)


def sasl_handshake(sock: socket.socket, mechanism: str,
                   correlation_id: int) -> tuple[int, list[str]]:
    """Send SaslHandshake v1 for ``mechanism``: the broker's error code and its mechanisms."""
    reply = exchange(sock, SaslHandshakeRequest(mechanism=mechanism, version=1), correlation_id)
    return int(reply.error_code), [str(m) for m in reply.mechanisms or () if m is not None]


def sasl_authenticate(sock: socket.socket, auth_bytes: bytes,
                      correlation_id: int) -> tuple[int, str | None, bytes]:
    """Send SaslAuthenticate v1: the broker's error code, error message and auth bytes."""
    reply = exchange(sock, SaslAuthenticateRequest(auth_bytes=auth_bytes, version=1),
                     correlation_id)
    message = None if reply.error_message is None else str(reply.error_message)
    return int(reply.error_code), message, bytes(reply.auth_bytes or b"")


def exchange(sock: socket.socket, request: Any, correlation_id: int) -> Any:
    """Send one kafka-python request and return its decoded response.

    Raises
    ------
    NotKafkaReplyError
        If the reply is a TLS alert, has no plausible Kafka frame, answers another correlation
        id, or does not decode as the response to ``request``.
    OSError
        If the connection fails or closes (``ConnectionError``), or times out.
    """
    # The codec logs the raw bytes (a PLAIN password included) at DEBUG on "kafka.protocol.parser",
    # as it does for kafka-python's own connections: the CLI keeps "kafka" at WARNING or above.
    codec = KafkaProtocol(client_id=CLIENT_ID, receive_message_max_bytes=MAX_RESPONSE_BYTES)
    codec.send_request(request, correlation_id=correlation_id)
    sock.sendall(codec.send_bytes())
    data = _read_exactly(sock, _FRAME_SIZE_BYTES)
    if data.startswith(TLS_ALERT_PREFIX):
        raise NotKafkaReplyError("the peer answered with a TLS alert", tls=True)
    try:
        # The codec checks the frame size, then the correlation id, then decodes the body.
        while not (responses := codec.receive_bytes(data)):
            data = _recv(sock, _RECV_BYTES)
    # kafka-python lets struct.error out of a frame too short for a response header.
    except (kafka.errors.KafkaError, ValueError, struct.error) as exc:
        raise NotKafkaReplyError(f"the peer's reply is not a Kafka response ({exc})",
                                 tls=False) from exc
    return responses[0][1]  # one request in flight: a second response is a CorrelationIdError


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += _recv(sock, n - len(data))
    return data


def _recv(sock: socket.socket, n: int) -> bytes:
    chunk = sock.recv(n)
    if not chunk:
        raise ConnectionError("the broker closed the connection")
    return chunk
