"""Alert rules (promtool check/test) and Grafana dashboards (structure, provisioning, names)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from itertools import combinations
from typing import Any

import pytest
import yaml

from export.promql_names import (
    DASHBOARDS_DIR,
    PROJECT_ROOT,
    RULES_DIR,
    dashboards,
    names_used,
    recorded_names,
    rules,
)

PROM_DIR = PROJECT_ROOT / "deploy" / "prometheus"
ALERTS = {
    "SaewatchBehaviouralDrift",
    "SaewatchNewVersionTooFewEvents",
    "SaewatchConsumerLagHigh",
    "SaewatchInvalidEventsHigh",
    "SaewatchNoEvents",
    "SaewatchSnapshotStale",
    "SaewatchReportStale",
    "SaewatchProcessingErrors",
    "SaewatchDown",
    "SaewatchBehaviourRose",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run `make system-deps` (deploy/tools/install-test-deps.sh)", pytrace=False)
    return subprocess.run(
        ["promtool", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        check=False,
    )


@pytest.mark.prometheus
def test_promtool_check_rules_and_config() -> None:
    files = [str(p) for p in sorted(RULES_DIR.glob("*.yml"))]
    checked = promtool("check", "rules", *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 19 rules found" in checked.stdout
    config = promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


@pytest.mark.prometheus
def test_promtool_unit_tests_pass() -> None:
    tests = [str(p) for p in sorted((PROM_DIR / "tests").glob("*.yml"))]
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_severity_summary_and_is_unit_tested() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert set(alerts) == ALERTS
    tested = "".join(p.read_text() for p in sorted((PROM_DIR / "tests").glob("*.yml")))
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f"alertname: {name}" in tested, f"{name} has no promtool test"


def test_dashboards_are_up_to_date_with_their_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(DASHBOARDS_DIR / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_dashboards_have_stable_uids_and_use_the_datasource_variable() -> None:
    boards = dashboards()
    assert set(boards) == {"saewatch-overview.json", "saewatch-comparison.json",
                           "saewatch-behaviours.json"}
    uids = {b["uid"] for b in boards.values()}
    assert uids == {"saewatch-overview", "saewatch-comparison", "saewatch-behaviours"}
    for board in boards.values():
        assert board["id"] is None
        (ds,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert ds["query"] == "prometheus" and ds["current"]["value"] == "prometheus"
        for panel in _panels(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_dashboard_panels_do_not_overlap() -> None:
    for name, board in dashboards().items():
        boxes = [(p["title"], p["gridPos"]) for p in board["panels"]]
        for (t1, a), (t2, b) in combinations(boxes, 2):
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{name}: {t1!r} overlaps {t2!r}"
        assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])


def test_drill_down_table_joins_the_info_series_for_labels() -> None:
    board = dashboards()["saewatch-comparison.json"]
    tables = [p for p in _panels(board) if p["type"] == "table"]
    assert len(tables) == 2
    for table in tables:
        exprs = [t["expr"] for t in table["targets"]]
        assert all("group_left (feature, label)" in e for e in exprs)
        assert all("(saewatch_top_feature_info{" in e for e in exprs)
        assert table["transformations"][0]["id"] == "merge"


def test_recording_rules_used_anywhere_are_defined() -> None:
    recorded = recorded_names()
    used = {n for n in names_used() if ":" in n}
    assert used, "dashboards should use the recording rules"
    assert used <= recorded, used - recorded


def test_provisioning() -> None:
    prov = DASHBOARDS_DIR / "provisioning"
    (provider,) = yaml.safe_load((prov / "dashboards" / "saewatch.yaml").read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert (source["uid"], source["type"]) == ("prometheus", "prometheus")
