"""The exporter's HTTP server, for real on a free loopback port: probes, metrics, API, auth."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from export.drift_reports import BASELINE, CANDIDATE, DOWN, MODEL_ID, UP, drift_report
from export.export_harness import Exporter, ExporterFactory
from export.http_helpers import fetch
from saewatch.config import WebSettings
from saewatch.export import ExporterServer, ReportHolder, StateQueries
from saewatch.export.exceptions import ServerStartError
from saewatch.export.web.schemas import comparison_id
from saewatch.models import ComparisonKey

DRIFT_ID = comparison_id(
    ComparisonKey(model_id=MODEL_ID, field="response", baseline=BASELINE, candidate=CANDIDATE)
)
TOKEN = "s3cret-token"


def test_probes(exporter: ExporterFactory) -> None:
    waiting = exporter()
    assert fetch(waiting.url + "/-/healthy").json() == {"status": "ok", "reason": "serving"}
    not_ready = fetch(waiting.url + "/-/ready")
    assert not_ready.status == 503
    assert not_ready.json()["reason"] == "no drift report computed yet"
    hooked = exporter(readiness=lambda: (False, "partitions not assigned yet"))
    assert fetch(hooked.url + "/-/ready").json() == {
        "status": "unavailable",
        "reason": "partitions not assigned yet",
    }
    ready = exporter(readiness=lambda: (True, "model loaded, 2 partitions, state restored"))
    assert fetch(ready.url + "/-/ready").status == 200


def test_metrics_endpoint_formats(drifting: Exporter) -> None:
    plain = fetch(drifting.url + "/metrics")
    assert plain.status == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert 'saewatch_comparison_drift_score{baseline="gpt4_1106_preview"' in plain.text
    assert "saewatch_events_consumed_total 0.0" in plain.text
    om = fetch(drifting.url + "/metrics", {"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    zipped = fetch(drifting.url + "/metrics", {"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped.body).decode().startswith("# HELP")


def test_bearer_token(exporter: ExporterFactory) -> None:
    ex = exporter(report=drift_report(), bearer_token=TOKEN)
    missing = fetch(ex.url + "/metrics")
    assert missing.status == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert fetch(ex.url + "/metrics", {"Authorization": "Bearer wrong"}).status == 401
    assert fetch(ex.url + "/api/v1/comparisons", {"Authorization": TOKEN}).status == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert fetch(ex.url + "/metrics", good).status == 200
    assert fetch(ex.url + "/", good).status == 200
    # Unknown paths do not reveal themselves to anonymous clients.
    assert fetch(ex.url + "/nope").status == 401
    assert fetch(ex.url + "/nope", good).status == 404
    # Probes stay open for orchestrators.
    assert fetch(ex.url + "/-/healthy").status == 200
    assert fetch(ex.url + "/-/ready").status == 200
    doc = fetch(ex.url + "/api/openapi.json", good).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/-/healthy"]["get"]["security"] == []


def test_every_route_but_the_probes_needs_the_token(exporter: ExporterFactory) -> None:
    """Enumerates the route table, so a route added later cannot forget the token."""
    ex = exporter(report=drift_report(), bearer_token=TOKEN)
    routes = ex.server.router.routes
    assert {r.name for r in routes if r.public} == {"healthy", "ready"}
    good = {"Authorization": f"Bearer {TOKEN}"}
    for route in routes:
        path = route.path.format(comparison_id=DRIFT_ID, feature="3", name="report.css",
                                 behaviour="apology")
        anonymous, wrong = fetch(ex.url + path), fetch(ex.url + path, {"Authorization": "Bearer x"})
        expected = 200 if route.public else 401
        assert (route.name, anonymous.status, wrong.status) == (route.name, expected, expected)
        assert fetch(ex.url + path, good).status not in (401, 403), route.name


def test_the_token_can_come_from_a_file(exporter: ExporterFactory, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")  # as a mounted secret often ends
    ex = exporter(report=drift_report(), bearer_token_file=secret)
    assert fetch(ex.url + "/metrics").status == 401
    assert fetch(ex.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_comparisons_list_filters_and_pages(drifting: Exporter) -> None:
    listing = fetch(drifting.url + "/api/v1/comparisons").json()
    assert listing["total"] == 3
    assert [c["verdict"] for c in listing["items"]] == ["drift", "no_drift", "insufficient_data"]
    first = listing["items"][0]
    assert first["id"] == DRIFT_ID
    assert first["n_significant"] == 412
    assert first["slug"] == f"{MODEL_ID}/response/{BASELINE}..{CANDIDATE}"
    page = fetch(drifting.url + "/api/v1/comparisons?offset=1&limit=1").json()
    assert (page["total"], page["offset"], page["limit"]) == (3, 1, 1)
    assert [c["verdict"] for c in page["items"]] == ["no_drift"]
    drift_only = fetch(drifting.url + "/api/v1/comparisons?verdict=drift&kind=versions").json()
    assert [c["id"] for c in drift_only["items"]] == [DRIFT_ID]
    assert fetch(drifting.url + "/api/v1/comparisons?model_id=other").json()["total"] == 0


def test_comparison_diff_with_labels_examples_and_history(drifting: Exporter) -> None:
    diff = fetch(drifting.url + f"/api/v1/comparisons/{DRIFT_ID}").json()
    assert diff["comparison"]["drift_score"] == 7.85
    assert diff["total"] == len(UP) + len(DOWN)
    assert len(diff["features"]) == diff["total"] == 17  # default page size 20
    top = diff["features"][0]
    assert top["rank"] == 1
    assert top["delta"]["feature"] == UP[0][0]
    assert top["delta"]["label"] == UP[0][1]
    assert top["delta"]["examples_candidate"][0]["model_version"] == CANDIDATE
    assert len(top["delta"]["examples_candidate"][0]["text"]) > 50
    assert len(diff["history"]) == 12
    scores = [p["drift_score"] for p in diff["history"]]
    assert scores == sorted(scores) and scores[-1] == 7.85
    down = fetch(drifting.url + f"/api/v1/comparisons/{DRIFT_ID}?direction=down&limit=2&offset=1")
    body = down.json()
    assert body["total"] == len(DOWN)
    assert [f["rank"] for f in body["features"]] == [2, 3]
    assert [f["delta"]["label"] for f in body["features"]] == [DOWN[1][1], DOWN[2][1]]


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/api/v1/comparisons/0123456789ab", 404, "no comparison with id"),
        ("/api/v1/unknown", 404, "no route"),
        ("/api/v1/comparisons?limit=0", 400, "'limit' must be at least 1"),
        ("/api/v1/comparisons?limit=ten", 400, "'limit' must be an integer"),
        ("/api/v1/comparisons?verdict=bad", 400, "'verdict' must be one of"),
        ("/api/v1/comparisons?colour=red", 400, "unknown query parameter(s): colour"),
        (f"/api/v1/comparisons/{DRIFT_ID}?direction=sideways", 400, "'direction'"),
        ("/api/v1/features/-3", 404, "'feature' must be at least 0"),
        ("/static/../../etc/passwd", 404, "no route"),
        ("/static/evil.js", 404, "'name' must be one of"),
    ],
)
def test_errors_are_problem_documents(
    drifting: Exporter, path: str, status: int, detail: str
) -> None:
    response = fetch(drifting.url + path)
    assert response.status == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert detail in problem["detail"]


def test_versions_and_clusters(drifting: Exporter) -> None:
    versions = fetch(drifting.url + "/api/v1/versions").json()["items"]
    assert [(v["model_version"], v["documents"]) for v in versions] == [
        (BASELINE, 805),
        (CANDIDATE, 805),
        ("2026-11-25-rc1", 37),
    ]
    clusters = fetch(drifting.url + f"/api/v1/clusters?model_version={CANDIDATE}").json()["items"]
    assert len(clusters) == 20
    assert {c["model_version"] for c in clusters} == {CANDIDATE}
    assert sum(c["share"] for c in clusters) == pytest.approx(1.0)


def test_no_report_and_no_state_are_503(exporter: ExporterFactory) -> None:
    ex = exporter()
    assert fetch(ex.url + "/api/v1/comparisons").status == 503
    assert fetch(ex.url + "/api/v1/versions").status == 503
    no_state = fetch(ex.url + "/api/v1/features/12")
    assert no_state.status == 503
    assert "state queries are not attached" in no_state.json()["detail"]
    page = fetch(ex.url + "/")
    assert page.status == 200 and "No drift report yet" in page.text


def test_snippets_can_be_switched_off(exporter: ExporterFactory) -> None:
    ex = exporter(report=drift_report(), serve_snippets=False)
    diff = fetch(ex.url + f"/api/v1/comparisons/{DRIFT_ID}").json()
    assert diff["features"]
    assert all(f["delta"]["examples_baseline"] == [] for f in diff["features"])
    assert all(f["delta"]["examples_candidate"] == [] for f in diff["features"])
    example_text = drift_report().comparisons[0].top_up[0].examples_candidate[0].text[:40]
    page = fetch(ex.url + "/")
    assert page.status == 200
    assert example_text.split("\n")[0][:30] not in page.text
    assert "<blockquote" not in page.text
    off = fetch(ex.url + "/api/v1/features/1412/examples?model_id=m&model_version=v")
    assert off.status == 404 and "serve_snippets" in off.json()["detail"]


def test_report_page_escapes_and_sets_csp(drifting: Exporter) -> None:
    page = fetch(drifting.url + "/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>alert(" not in page.text
    assert "&lt;script&gt;alert(&#x27;label&#x27;)&lt;/script&gt; &amp; friends" in page.text
    assert f'id="c-{DRIFT_ID}"' in page.text
    js = fetch(drifting.url + "/static/report.js")
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    css = fetch(drifting.url + "/static/report.css")
    assert css.status == 200 and ".badge.drift" in css.text


def test_requests_are_counted_per_route(drifting: Exporter) -> None:
    get = drifting.registry.get_sample_value
    assert get("saewatch_http_requests_total", {"handler": "comparisons", "code": "200"}) == 0.0
    fetch(drifting.url + "/api/v1/comparisons")
    fetch(drifting.url + "/api/v1/comparisons?limit=0")
    assert get("saewatch_http_requests_total", {"handler": "comparisons", "code": "200"}) == 1.0
    assert get("saewatch_http_requests_total", {"handler": "comparisons", "code": "400"}) == 1.0


def test_port_in_use_is_a_clear_error(drifting: Exporter) -> None:
    host, port = drifting.server.address
    clash = ExporterServer(
        WebSettings(listen_address=f"{host}:{port}"), CollectorRegistry(), ReportHolder()
    )
    with pytest.raises(ServerStartError, match=f"cannot listen on {host}:{port}"):
        clash.start()


def test_stop_releases_the_port(exporter: ExporterFactory) -> None:
    ex = exporter()
    host, port = ex.server.address
    ex.server.stop()
    ex.server.stop()  # idempotent
    with socket.create_server((host, port)):
        pass


def test_keep_alive_replies_are_not_held_back_by_nagle(exporter: ExporterFactory) -> None:
    """Accepted sockets have TCP_NODELAY: the reply's second write (the body) is not held for
    the client's delayed ACK, which cost every keep-alive scrape ~40 ms."""
    ex = exporter()
    host, port = ex.server.address
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/-/healthy")
    assert json.loads(connection.getresponse().read())["status"] == "ok"
    open_now = list(ex.server._httpd.connections)  # noqa: SLF001 (the server's own sockets)
    assert len(open_now) == 1
    assert open_now[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    connection.close()


def test_stop_ends_open_keep_alive_connections(exporter: ExporterFactory) -> None:
    ex = exporter()
    host, port = ex.server.address
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/-/healthy")
    first = connection.getresponse()
    assert first.status == 200 and json.loads(first.read())["status"] == "ok"
    ex.server.stop()
    # A stopped server used to go on answering on the connection it had accepted.
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        connection.request("GET", "/-/healthy")
        connection.getresponse()
    connection.close()


class BrokenState(StateQueries):
    """State queries that fail as a bug would."""

    def version_counts(self):  # noqa: ANN201
        raise RuntimeError("boom")

    def feature_detail(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise RuntimeError("boom")

    def retrieve(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise RuntimeError("boom")

    def examples(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise RuntimeError("boom")

    def cluster_shares(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise RuntimeError("boom")


def test_a_fault_in_a_handler_is_a_500_problem_and_counted(exporter: ExporterFactory) -> None:
    ex = exporter(report=drift_report(), state=BrokenState())
    response = fetch(ex.url + "/api/v1/features/3")
    assert response.status == 500
    assert response.json()["title"] == "Internal Server Error"
    assert "log" in response.json()["detail"] and "boom" not in response.body.decode()
    assert ex.registry.get_sample_value(
        "saewatch_http_requests_total", {"handler": "feature", "code": "500"}) == 1


def test_concurrent_requests_are_all_answered(drifting: Exporter) -> None:
    with ThreadPoolExecutor(max_workers=48) as pool:
        statuses = list(pool.map(lambda _: fetch(drifting.url + "/metrics").status, range(96)))
    assert statuses == [200] * 96


def test_head_answers_headers_only(drifting: Exporter) -> None:
    request = urllib.request.Request(drifting.url + "/-/healthy", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) > 0
        assert response.read() == b""
