"""The security probe without a broker: files checked before any connection, positive evidence
only (a TLS alert), and silence or refusal treated as "nothing proven". The real broker's
answers are in test_kafka_security.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from saewatch.config import KafkaSettings
from saewatch.errors import ConfigError, KafkaSecurityError
from saewatch.source.exceptions import KafkaTlsError, SourceError
from saewatch.source.retry import connect_with_retry
from saewatch.source.security import check_security, tls_context
from saewatch.source.stats import SourceStats
from tests.support.kafka import free_port

# What a TLS listener sends to a plaintext request: an alert record (fatal, unexpected_message).
TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x0a"


@pytest.fixture
def fake_listener() -> Iterator[Callable[[bytes | None], str]]:
    """``start(reply)``: a port that answers each connection with ``reply`` (None: hangs up)."""
    servers: list[socket.socket] = []

    def start(reply: bytes | None) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:  # closed by the fixture
                    return
                with conn:
                    if reply is not None:
                        conn.recv(4096)
                        conn.sendall(reply)

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
    fake_listener: Callable[[bytes | None], str]
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
    fake_listener: Callable[[bytes | None], str], reply: bytes | None
) -> None:
    address = fake_listener(reply)
    for protocol in ("PLAINTEXT", "SSL"):
        check_security(KafkaSettings(bootstrap_servers=[address], security_protocol=protocol,
                                     request_timeout_ms=1_000))


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
