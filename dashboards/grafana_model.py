"""Helpers that build Grafana dashboard JSON (panels, targets, variables) for saewatch.

Every panel's data source is ``${datasource}``, a data-source variable whose default is the uid
``prometheus``; dashboards get a stable uid and ``id: null``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
CMP = 'model_id="$model_id", field="$field", baseline="$baseline", candidate="$candidate", kind="$kind"'
Panel = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A", table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "refId": ref, "legendFormat": legend}
    if table:
        t.update({"format": "table", "instant": True, "range": False})
    return t


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    pos: tuple[int, int, int, int],
    unit: str = "short",
    description: str = "",
    **extra: Any,
) -> Panel:
    x, y, w, h = pos
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    p.update(extra)
    return p


def stat(
    title: str,
    expr: str,
    pos: tuple[int, int, int, int],
    unit: str = "short",
    thresholds: Sequence[tuple[float | None, str]] | None = None,
    description: str = "",
) -> Panel:
    p = panel("stat", title, [target(expr)], pos, unit, description)
    steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
    p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": steps}
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    return p


def row(title: str, y: int) -> Panel:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
    }


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "refresh": 2,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "includeAll": False,
        "multi": False,
        "sort": 1,
    }


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"},
        "hide": 0,
    }


def dashboard(
    uid: str, title: str, panels: list[Panel], variables: list[dict[str, Any]], description: str
) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["saewatch"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource_variable(), *variables]},
        "annotations": {"list": []},
        "panels": panels,
        "links": [
            {
                "title": "saewatch dashboards",
                "type": "dashboards",
                "tags": ["saewatch"],
                "asDropdown": False,
            }
        ],
    }
