"""The security probe without a broker: files checked before any connection, positive evidence
only (a TLS alert), and silence or refusal treated as "nothing proven". The real broker's
answers are in test_kafka_security.py."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from saewatch.config import KafkaSettings
from saewatch.errors import ConfigError, KafkaSecurityError
from saewatch.source.exceptions import KafkaAuthError, KafkaTlsError, SourceError
from saewatch.source.retry import connect_with_retry
from saewatch.source.security import check_security, tls_context
from saewatch.source.stats import SourceStats
from tests.support.kafka import free_port

# What a TLS listener sends to a plaintext request: an alert record (fatal, unexpected_message).
TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x0a"
Replies = bytes | list[bytes] | None


def frame(correlation_id: int, body: bytes) -> bytes:
    """A Kafka response: int32 size, response header v0 (the correlation id), the body."""
    return struct.pack(">ii", 4 + len(body), correlation_id) + body


def string(value: str) -> bytes:
    return struct.pack(">h", len(value)) + value.encode()


API_VERSIONS_OK = frame(1, struct.pack(">hi", 0, 0))  # no error, no api keys


def handshake(error: int, *mechanisms: str) -> bytes:
    return frame(2, struct.pack(">hi", error, len(mechanisms)) + b"".join(map(string, mechanisms)))


@pytest.fixture
def fake_listener() -> Iterator[Callable[[Replies], str]]:
    """``start(reply)``: a port that answers each connection with ``reply`` (None: hangs up),
    or with each of a list of replies, one per request."""
    servers: list[socket.socket] = []

    def start(reply: Replies) -> str:
        replies = reply if isinstance(reply, list) else [] if reply is None else [reply]
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:  # closed by the fixture
                    return
                with conn:
                    for answer in replies:
                        conn.recv(4096)
                        conn.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        return f"127.0.0.1:{server.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


def test_security_errors_are_configuration_errors() -> None:
    assert issubclass(KafkaTlsError, KafkaSecurityError)
    assert issubclass(KafkaSecurityError, ConfigError)  # exit 2, one line
    assert not issubclass(KafkaSecurityError, SourceError)  # never "retry, the broker may return"


def test_a_ca_file_that_holds_no_certificate_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(KafkaTlsError, match=f"^kafka.ssl_cafile: {junk} holds no PEM CA"):
        tls_context(KafkaSettings(security_protocol="SSL", ssl_cafile=junk))


def test_a_plaintext_client_at_a_tls_port_is_told_at_once(
    fake_listener: Callable[[Replies], str]
) -> None:
    kafka = KafkaSettings(bootstrap_servers=[fake_listener(TLS_ALERT)])
    with pytest.raises(KafkaTlsError, match="^kafka.security_protocol: .* is a TLS listener"):
        check_security(kafka)
    calls: list[int] = []
    with pytest.raises(KafkaTlsError):  # before kafka-python would wait out its bootstrap
        connect_with_retry(lambda: calls.append(1), kafka, SourceStats())
    assert calls == []


@pytest.mark.parametrize("reply", [None, b"", b"\x00\x00"])
def test_silence_or_a_hang_up_proves_nothing(
    fake_listener: Callable[[Replies], str], reply: bytes | None
) -> None:
    address = fake_listener(reply)
    for protocol in ("PLAINTEXT", "SSL"):
        check_security(KafkaSettings(bootstrap_servers=[address], security_protocol=protocol,
                                     request_timeout_ms=1_000))


@pytest.mark.parametrize("reply", [
    b"\x7f\xff\xff\xff",  # an absurd frame size
    b"\x00\x00\x00\x00",  # a frame too short for a response header
    frame(99, struct.pack(">hi", 0, 0)),  # the answer to another request
    frame(1, b"\x00"),  # a body that is no ApiVersions response
], ids=["huge", "empty", "other-correlation-id", "undecodable"])
def test_a_reply_that_is_no_kafka_response_proves_nothing(
    fake_listener: Callable[[Replies], str], reply: bytes
) -> None:
    address = fake_listener(reply)
    for protocol in ("PLAINTEXT", "SSL"):
        check_security(KafkaSettings(bootstrap_servers=[address], security_protocol=protocol,
                                     request_timeout_ms=1_000))


def sasl_client(address: str, mechanism: str = "PLAIN") -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=[address], security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism=mechanism, sasl_username="probe", sasl_password="pw")


def test_a_sasl_client_at_a_port_without_sasl_is_named(
    fake_listener: Callable[[Replies], str]
) -> None:
    address = fake_listener([API_VERSIONS_OK, handshake(34)])  # ILLEGAL_SASL_STATE
    with pytest.raises(KafkaAuthError, match="^kafka.security_protocol: .* has no SASL on this"):
        check_security(sasl_client(address))


def test_a_plaintext_client_at_a_sasl_port_is_named(
    fake_listener: Callable[[Replies], str]
) -> None:
    address = fake_listener([API_VERSIONS_OK, handshake(0, "PLAIN", "SCRAM-SHA-512")])
    with pytest.raises(KafkaAuthError, match=r"requires a SASL login \(PLAIN, SCRAM-SHA-512\)"):
        check_security(KafkaSettings(bootstrap_servers=[address]))


def test_a_mechanism_the_broker_does_not_offer_is_named(
    fake_listener: Callable[[Replies], str]
) -> None:
    address = fake_listener([API_VERSIONS_OK, handshake(33, "PLAIN")])  # UNSUPPORTED_SASL_MECH.
    with pytest.raises(KafkaAuthError, match=r"^kafka.sasl_mechanism: .* does not offer "
                                             r"SCRAM-SHA-512 \(it offers PLAIN\)"):
        check_security(sasl_client(address, "SCRAM-SHA-512"))


def test_a_refused_login_carries_the_brokers_words(
    fake_listener: Callable[[Replies], str]
) -> None:
    refusal = frame(3, struct.pack(">h", 58) + string("Authentication failed: bad password")
                    + struct.pack(">iq", -1, 0))  # SASL_AUTHENTICATION_FAILED, no auth bytes
    address = fake_listener([API_VERSIONS_OK, handshake(0, "PLAIN"), refusal])
    with pytest.raises(KafkaAuthError, match=r"refused the PLAIN login of user 'probe' "
                                             r"\(Authentication failed: bad password\)"):
        check_security(sasl_client(address))


def test_an_unreachable_broker_proves_nothing() -> None:
    check_security(KafkaSettings(bootstrap_servers=[f"127.0.0.1:{free_port()}"],
                                 security_protocol="SSL"))


def test_a_key_that_does_not_open_is_named_without_any_broker(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    kafka = KafkaSettings(bootstrap_servers=[f"127.0.0.1:{free_port()}"],
                          security_protocol="SSL", ssl_certfile=cert, ssl_password="pw")
    with pytest.raises(KafkaTlsError, match="^kafka.ssl_password: it does not open the key"):
        check_security(kafka)
