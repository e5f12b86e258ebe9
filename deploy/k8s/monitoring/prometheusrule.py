#!/usr/bin/env python3
"""Wrap the project's Prometheus alert rules into a Prometheus Operator ``PrometheusRule``.

The rules have one source of truth, ``deploy/prometheus/rules/*.yml`` (loaded as rule files by the
compose stack and by plain Prometheus). The operator wants them inside a custom resource, so this
prints one, ready for ``kubectl apply -f -``::

    python deploy/k8s/monitoring/prometheusrule.py | kubectl apply -f -
    python deploy/k8s/monitoring/prometheusrule.py --label release=kube-prometheus-stack

Needs only PyYAML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "prometheus" / "rules"


def rule_files(rules_dir: Path) -> list[Path]:
    """The rule files Prometheus would load from ``rules_dir`` (``*.yml`` and ``*.yaml``)."""
    return sorted([*rules_dir.glob("*.yml"), *rules_dir.glob("*.yaml")])


def build(rules_dir: Path, name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """One PrometheusRule holding every group of every rule file, in file order."""
    files = rule_files(rules_dir)
    if not files:
        raise SystemExit(f"no rule files (*.yml, *.yaml) in {rules_dir}")
    groups: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for path in files:
        data = yaml.safe_load(path.read_text()) or {}
        for group in data.get("groups", []):
            if group["name"] in seen:
                raise SystemExit(
                    f"rule group {group['name']!r} in both {seen[group['name']]} and {path}"
                )
            seen[group["name"]] = path
            groups.append(group)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "saewatch",
                "app.kubernetes.io/part-of": "saewatch",
                **labels,
            },
        },
        "spec": {"groups": groups},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules-dir", type=Path, default=RULES_DIR)
    parser.add_argument("--name", default="saewatch")
    parser.add_argument("--namespace", default="saewatch")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra metadata label, e.g. release=kube-prometheus-stack",
    )
    args = parser.parse_args(argv)
    labels = dict(item.split("=", 1) for item in args.label)
    doc = build(args.rules_dir, args.name, args.namespace, labels)
    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
