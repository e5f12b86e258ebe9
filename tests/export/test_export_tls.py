"""HTTPS on the exporter's port: a real TLS handshake with certificates from a throw-away CA
(trustme), client certificates when a client CA is set, and clear errors for bad files."""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trustme
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from saewatch.config import WebSettings
from saewatch.export import ExporterServer, ReportHolder
from saewatch.export.exceptions import ServerStartError

TOKEN = "tls-token"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pems(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
             "ca": tmp_path / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(paths["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    return paths


def serve(**web: object) -> ExporterServer:
    server = ExporterServer(WebSettings(listen_address="127.0.0.1:0", **web),  # type: ignore[arg-type]
                            CollectorRegistry(), ReportHolder())
    server.start()
    return server


def get(url: str, context: ssl.SSLContext, token: str | None = TOKEN) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_https_with_a_token(pems: dict[str, Path]) -> None:
    server = serve(tls_cert_file=pems["cert"], tls_key_file=pems["key"], bearer_token=TOKEN)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(pems["ca"]))
        status, body = get(server.url + "/metrics", trusting)
        assert status == 200 and b"saewatch_http_requests_total" in body
        assert get(server.url + "/metrics", trusting, token=None)[0] == 401
        assert get(server.url + "/-/healthy", trusting, token=None)[0] == 200
        # A client that does not trust the CA fails the handshake, and so does plain HTTP.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(server.url + "/metrics", ssl.create_default_context())
        host, port = server.address
        plain = http.client.HTTPConnection(host, port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/-/healthy")
            plain.getresponse()
        plain.close()
        # Failed handshakes cost the server nothing: it goes on serving.
        assert get(server.url + "/-/ready", trusting, token=None)[0] in (200, 503)
    finally:
        server.stop()


def test_client_certificates_when_a_client_ca_is_set(ca: trustme.CA,
                                                     pems: dict[str, Path]) -> None:
    server = serve(tls_cert_file=pems["cert"], tls_key_file=pems["key"],
                   tls_client_ca_file=pems["ca"])
    try:
        without = ssl.create_default_context(cafile=str(pems["ca"]))
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            get(server.url + "/metrics", without, token=None)
        with_cert = ssl.create_default_context(cafile=str(pems["ca"]))
        ca.issue_cert("prometheus@example.org").configure_cert(with_cert)
        assert get(server.url + "/metrics", with_cert, token=None)[0] == 200
    finally:
        server.stop()


def test_unloadable_tls_files_are_a_clear_start_error(pems: dict[str, Path],
                                                      tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ServerStartError, match="web.tls_cert_file / web.tls_key_file"):
        serve(tls_cert_file=garbage, tls_key_file=pems["key"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_cert_file": "CERT"}, "set both, or neither"),
        ({"tls_client_ca_file": "CA"}, "needs web.tls_cert_file"),
        ({"tls_cert_file": "missing.pem", "tls_key_file": "KEY"}, "not a readable file"),
        ({"bearer_token": "x", "bearer_token_file": "CA"}, "set one of them"),
        ({"bearer_token_file": "EMPTY"}, "is empty"),
    ],
)
def test_inconsistent_web_settings_say_what_to_fix(
    pems: dict[str, Path], tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    names = {"CERT": pems["cert"], "KEY": pems["key"], "CA": pems["ca"],
             "EMPTY": tmp_path / "empty"}
    values = {k: names.get(v, tmp_path / v) if k != "bearer_token" else v
              for k, v in fields.items()}
    with pytest.raises(ValidationError, match=message):
        WebSettings(**values)  # type: ignore[arg-type]
