"""Check a Kafka client's security settings against the broker before kafka-python connects.

Why a probe: kafka-python 3.0 retries a failed TLS handshake or SASL login inside its bootstrap
until ``bootstrap_timeout_ms`` and then raises ``KafkaTimeoutError("Unable to bootstrap ...")``,
the same error as for a broker that is down; the cause only reaches its log. saewatch waits for a
broker that is down (:func:`~saewatch.source.retry.connect_with_retry`), so a wrong password or
CA would have it wait forever. :func:`check_security` speaks to the first reachable bootstrap
server itself: a TLS handshake with the configured CA and client certificate (or, for plaintext
settings, a request that a TLS listener answers with an alert), then SaslHandshake and a login
with the configured mechanism. When the broker gives positive evidence of a mismatch it raises a
:class:`~saewatch.errors.KafkaSecurityError` whose one-line message names the setting to fix.
A broker that cannot be reached, or does not answer in time, proves nothing: the caller retries.

Secrets never enter a message: only setting names, paths, the user name and the broker's words.

>>> from saewatch.config import KafkaSettings
>>> tls_context(KafkaSettings()).check_hostname
True
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import kafka.errors
from kafka.net.sasl import get_sasl_mechanism

from saewatch.config import KafkaSettings
from saewatch.source.client import client_options
from saewatch.source.exceptions import KafkaAuthError, KafkaTlsError
from saewatch.source.wire import (
    NotKafkaReplyError,
    api_versions,
    sasl_authenticate,
    sasl_handshake,
)

logger = logging.getLogger(__name__)

# Kafka error codes the probe tells apart.
UNSUPPORTED_SASL_MECHANISM: int = kafka.errors.UnsupportedSaslMechanismError.errno  # 33
# 34: a listener without SASL answers any SaslHandshake with it
ILLEGAL_SASL_STATE: int = kafka.errors.IllegalSaslStateError.errno
# OpenSSL's verify code for a certificate that does not name the host connected to.
X509_V_ERR_HOSTNAME_MISMATCH = 62
# Each probe step waits at most this long: a slow broker is left to kafka-python's own timeouts.
PROBE_TIMEOUT_S = 10.0
PASSWORD_SETTINGS = "kafka.sasl_password (SAEWATCH_KAFKA__SASL_PASSWORD) or kafka.sasl_password_file"


def check_security(kafka: KafkaSettings) -> None:
    """Probe the first reachable bootstrap server with ``kafka``'s TLS and SASL settings.

    Raises
    ------
    KafkaTlsError, KafkaAuthError
        When the broker shows the settings cannot work; the message names the setting.
    """
    timeout_s = min(PROBE_TIMEOUT_S, kafka.request_timeout_ms / 1000)
    # The files are checked first: a wrong key password needs no broker to be found out.
    ctx = tls_context(kafka) if kafka.security_protocol in ("SSL", "SASL_SSL") else None
    for server in kafka.bootstrap_servers:
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        try:
            with _connect(host, int(port), timeout_s) as sock:
                _probe(kafka, ctx, sock, host, int(port), timeout_s)
            return
        except (OSError, ValueError, NotKafkaReplyError) as exc:
            # Unreachable, refused, timed out, hung up, or an odd reply: nothing proven.
            logger.debug("security probe of %s inconclusive: %s", server, exc)


def tls_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context kafka-python builds from ``kafka.ssl_*``, checked file by file.

    The key password is passed as a callable, so an encrypted key never makes OpenSSL prompt on
    a terminal, as kafka-python's own ``load_cert_chain(password=None)`` would.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if kafka.ssl_cafile is not None:
        try:
            ctx.load_verify_locations(str(kafka.ssl_cafile))
        except OSError as exc:  # ssl.SSLError included
            raise KafkaTlsError(f"kafka.ssl_cafile: {kafka.ssl_cafile} holds no PEM CA "
                                f"certificate ({_why(exc)}); give the CA's certificate "
                                "in PEM form") from exc
    else:
        ctx.load_default_certs()
    if kafka.ssl_certfile is not None:
        key_password = kafka.key_password()
        keyfile = kafka.ssl_keyfile or kafka.ssl_certfile
        try:
            ctx.load_cert_chain(str(kafka.ssl_certfile),
                                None if kafka.ssl_keyfile is None else str(kafka.ssl_keyfile),
                                password=lambda: key_password or "")
        except OSError as exc:  # ssl.SSLError included
            if key_password is None:
                hint = (f"kafka.ssl_keyfile: cannot load the key {keyfile} ({_why(exc)});"
                        " if it is encrypted, set kafka.ssl_password (SAEWATCH_KAFKA__SSL_PASSWORD)"
                        " or kafka.ssl_password_file")
            else:
                hint = (f"kafka.ssl_password: it does not open the key {keyfile}, or the key does "
                        f"not match kafka.ssl_certfile {kafka.ssl_certfile} ({_why(exc)})")
            raise KafkaTlsError(hint) from exc
    return ctx


def _why(exc: OSError) -> str:
    return str(getattr(exc, "reason", None) or exc.strerror or exc)


@contextlib.contextmanager
def _connect(host: str, port: int, timeout_s: float) -> Iterator[socket.socket]:
    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        yield sock
    finally:
        sock.close()


def _probe(kafka: KafkaSettings, ctx: ssl.SSLContext | None, sock: socket.socket, host: str,
           port: int, timeout_s: float) -> None:
    where = f"{host}:{port}"
    if ctx is None:
        _check_not_tls(sock, where, kafka.security_protocol)
        _check_sasl(kafka, sock, where)
        return
    with _start_tls(kafka, ctx, sock, host, port, timeout_s) as tls:
        try:
            _check_sasl(kafka, tls, where)
        except ssl.SSLError as exc:
            # TLS 1.3 completes the client's handshake before the broker checks the client's
            # certificate: its refusal arrives with the first reply.
            _certificate_refused(exc, where)
            raise


def _start_tls(kafka: KafkaSettings, ctx: ssl.SSLContext, sock: socket.socket, host: str,
               port: int, timeout_s: float) -> ssl.SSLSocket:
    where = f"{host}:{port}"
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == X509_V_ERR_HOSTNAME_MISMATCH:
            raise KafkaTlsError(
                f"kafka.bootstrap_servers: the certificate of the broker at {where} does not name "
                f"{host} ({exc.verify_message}); connect by a name or address it lists") from exc
        trusted = kafka.ssl_cafile or "the system's CA certificates"
        raise KafkaTlsError(
            f"kafka.ssl_cafile: the certificate of the broker at {where} is not signed by "
            f"{trusted} ({exc.verify_message}); set kafka.ssl_cafile to the PEM certificate of "
            "the CA that signed it") from exc
    except ssl.SSLError as exc:
        _certificate_refused(exc, where)
        if _answers_plaintext(host, port, timeout_s):
            _not_a_tls_listener(where, kafka.security_protocol, exc)
        raise
    except ConnectionError as exc:
        # A plaintext listener reads a TLS hello as an absurd request size and hangs up.
        if _answers_plaintext(host, port, timeout_s):
            _not_a_tls_listener(where, kafka.security_protocol, exc)
        raise


def _certificate_refused(exc: ssl.SSLError, where: str) -> None:
    """Raise when ``exc`` is the broker's TLS alert about the client's certificate."""
    reason = str(exc.reason or exc)
    if "CERTIFICATE" in reason.upper() or "UNKNOWN_CA" in reason.upper():
        raise KafkaTlsError(
            f"kafka.ssl_certfile: the broker at {where} refused the client certificate "
            f"({reason}); give a certificate (and kafka.ssl_keyfile) signed by a CA the broker "
            "trusts") from exc


def _not_a_tls_listener(where: str, protocol: str, exc: Exception) -> None:
    plain = "SASL_PLAINTEXT" if protocol == "SASL_SSL" else "PLAINTEXT"
    raise KafkaTlsError(
        f"kafka.security_protocol: the broker at {where} does not speak TLS, but "
        f"security_protocol is {protocol}; use its TLS port in kafka.bootstrap_servers, or set "
        f"security_protocol to {plain}") from exc


def _answers_plaintext(host: str, port: int, timeout_s: float) -> bool:
    """True when ``host:port`` answers a plaintext ApiVersions request like a Kafka broker."""
    try:
        with _connect(host, port, timeout_s) as sock:
            api_versions(sock, correlation_id=1)
        return True
    except (OSError, NotKafkaReplyError):
        return False


def _check_not_tls(sock: socket.socket, where: str, protocol: str) -> None:
    try:
        api_versions(sock, correlation_id=1)
    except NotKafkaReplyError as exc:
        if exc.tls:
            tls = "SASL_SSL" if protocol == "SASL_PLAINTEXT" else "SSL or SASL_SSL"
            raise KafkaTlsError(
                f"kafka.security_protocol: the broker at {where} is a TLS listener, but "
                f"security_protocol is {protocol}; set it to {tls} (with kafka.ssl_cafile), or "
                "use the broker's plaintext port") from exc
        raise


def _check_sasl(kafka: KafkaSettings, sock: socket.socket, where: str) -> None:
    protocol = kafka.security_protocol
    uses_sasl = protocol.startswith("SASL")
    mechanism = kafka.sasl_mechanism or "PLAIN"
    error, offered = sasl_handshake(sock, mechanism, correlation_id=2)
    if not uses_sasl:
        if error != ILLEGAL_SASL_STATE:
            sasl = "SASL_SSL" if protocol == "SSL" else "SASL_PLAINTEXT"
            raise KafkaAuthError(
                f"kafka.security_protocol: the broker at {where} requires a SASL login "
                f"({', '.join(offered) or 'mechanism unknown'}), but security_protocol is "
                f"{protocol}; set it to {sasl} with kafka.sasl_mechanism, kafka.sasl_username "
                f"and {PASSWORD_SETTINGS}")
        return
    if error == ILLEGAL_SASL_STATE:
        plain = "SSL" if protocol == "SASL_SSL" else "PLAINTEXT"
        raise KafkaAuthError(
            f"kafka.security_protocol: the broker at {where} has no SASL on this port, but "
            f"security_protocol is {protocol}; use its SASL port in kafka.bootstrap_servers, or "
            f"set security_protocol to {plain}")
    if error == UNSUPPORTED_SASL_MECHANISM:
        raise KafkaAuthError(
            f"kafka.sasl_mechanism: the broker at {where} does not offer {mechanism} (it offers "
            f"{', '.join(offered) or 'none'}); set kafka.sasl_mechanism to one of those")
    if error != 0:
        raise KafkaAuthError(f"kafka.sasl_mechanism: the broker at {where} refused the SASL "
                             f"handshake for {mechanism} (Kafka error {error})")
    if mechanism != "OAUTHBEARER":  # tokens come from a provider object: left to kafka-python
        _login(kafka, sock, where, mechanism)


def _login(kafka: KafkaSettings, sock: socket.socket, where: str, mechanism: str) -> None:
    """Authenticate with kafka-python's own SASL mechanism, as its connection will."""
    opts: dict[str, Any] = client_options(kafka)
    sasl = get_sasl_mechanism(mechanism)(**opts)
    correlation_id = 3
    while not sasl.is_done():
        error, message, data = sasl_authenticate(sock, sasl.auth_bytes(), correlation_id)
        if error != 0:
            raise KafkaAuthError(
                f"kafka.sasl_username / kafka.sasl_password: the broker at {where} refused the "
                f"{mechanism} login of user {kafka.sasl_username!r} ({message or f'error {error}'}"
                f"); check the user name and {PASSWORD_SETTINGS}")
        try:
            sasl.receive(data)
        except ValueError as exc:  # SCRAM: the server's proof does not match the password
            raise KafkaAuthError(
                f"kafka.sasl_password: the broker at {where} could not prove it knows user "
                f"{kafka.sasl_username!r}'s {mechanism} credentials ({exc}); check "
                f"{PASSWORD_SETTINGS}") from exc
        correlation_id += 1
