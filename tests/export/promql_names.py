"""Metric names used by the project's PromQL: alert/recording rules and Grafana dashboards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = PROJECT_ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS_DIR = PROJECT_ROOT / "dashboards"
# saewatch_* are exported by the daemon; saewatch:* are recorded by the rules.
NAME = re.compile(r"(?<![A-Za-z0-9_:])saewatch[_:][A-Za-z0-9_:]*")


def rule_documents() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(RULES_DIR.glob("*.yml"))]


def rules() -> Iterator[dict[str, Any]]:
    for doc in rule_documents():
        for group in doc["groups"]:
            yield from group["rules"]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def _dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield str(value["query"])
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def expressions() -> dict[str, list[str]]:
    """Where each PromQL expression comes from -> the expressions."""
    out = {"rules": [str(r["expr"]) for r in rules()]}
    for name, board in dashboards().items():
        out[name] = list(_dashboard_queries(board))
    return out


def names_used() -> dict[str, set[str]]:
    """Metric name -> the files whose PromQL uses it."""
    used: dict[str, set[str]] = {}
    for source, exprs in expressions().items():
        for expr in exprs:
            for name in NAME.findall(expr):
                used.setdefault(name, set()).add(source)
    return used


def recorded_names() -> set[str]:
    return {str(r["record"]) for r in rules() if "record" in r}
