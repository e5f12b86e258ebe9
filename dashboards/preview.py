#!/usr/bin/env python3
"""Render a saewatch Grafana dashboard's panels from a live Prometheus, without Grafana.

Grafana is not installable on every machine (no Debian package, no offline download), yet the
README and reviewers want to see the boards. This runs every panel's PromQL exactly as written in
the dashboard JSON (variables filled from Prometheus like Grafana does: the first value of each
``label_values`` query unless given) and draws the panels on the dashboard's grid with
matplotlib::

    python dashboards/preview.py --prometheus http://127.0.0.1:9090 \\
        --dashboard dashboards/saewatch-overview.json --out docs/dashboard-overview.png

It is a preview of the queries and layout, not Grafana's rendering.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.axes import Axes  # noqa: E402

BG, PANEL, FG, MUTED = "#111217", "#181b1f", "#ccccdc", "#8e8e9e"
COLOURS = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a")
ROW_INCHES = 0.42  # one Grafana grid row (30 px) at the figure's scale
TOP_INCHES = 0.6  # the figure title
VAR = re.compile(r"\$\{?(\w+)\}?")


class Prometheus:
    """Minimal client of Prometheus's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("query", query=expr)["result"])

    def series(self, expr: str, seconds: float) -> list[dict[str, Any]]:
        end = time.time()
        step = max(seconds / 120, 1.0)
        data = self.get(
            "query_range", query=expr, start=str(end - seconds), end=str(end), step=str(step)
        )
        return list(data["result"])


def resolve_variables(
    board: dict[str, Any], prom: Prometheus, given: dict[str, str]
) -> dict[str, str]:
    """Values of the dashboard's query variables: ``given`` ones, else the first Prometheus has."""
    values = dict(given)
    for var in board["templating"]["list"]:
        if var["type"] != "query" or var["name"] in values:
            continue
        found = re.match(r"label_values\((.*),\s*(\w+)\)$", substitute(var["definition"], values))
        if found is None:
            continue
        options = prom.get(f"label/{found.group(2)}/values", **{"match[]": found.group(1)})
        values[var["name"]] = sorted(options)[0] if options else ""
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    return VAR.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def legend(fmt: str, metric: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)
    return text or ", ".join(f"{k}={v}" for k, v in metric.items() if k != "__name__") or "value"


def fmt_value(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "–"
    if unit == "percentunit":
        return f"{100 * value:.1f}%"
    if unit == "bytes":
        return f"{value / 2**30:.2f} GiB"
    suffix = {"s": " s", "ops": "/s"}.get(unit, "")
    return f"{value:,.3g}{suffix}"


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    ax.set_title(title, loc="left", color=FG, fontsize=9)
    ax.tick_params(colors=MUTED, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color("#2c3235")


def draw_timeseries(
    ax: Axes, panel: dict[str, Any], prom: Prometheus, values: dict[str, str], seconds: float
) -> None:
    n = 0
    for target in panel["targets"]:
        for s in prom.series(substitute(target["expr"], values), seconds):
            xs = [float(t) - time.time() for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            ax.plot(
                [x / 60 for x in xs],
                ys,
                color=COLOURS[n % len(COLOURS)],
                linewidth=1.2,
                label=legend(target.get("legendFormat", ""), s["metric"])[:48],
            )
            n += 1
    ax.set_xlabel("minutes ago", color=MUTED, fontsize=7)
    if n:
        ax.margins(y=0.25)
        ax.legend(
            fontsize=6,
            facecolor=PANEL,
            edgecolor="#2c3235",
            labelcolor=FG,
            loc="best",
            framealpha=0.8,
        )
    else:
        ax.text(0.5, 0.5, "no data", color=MUTED, ha="center", transform=ax.transAxes)


def draw_stat(ax: Axes, panel: dict[str, Any], prom: Prometheus, values: dict[str, str]) -> None:
    result = prom.instant(substitute(panel["targets"][0]["expr"], values))
    defaults = panel["fieldConfig"]["defaults"]
    value = float(result[0]["value"][1]) if result else float("nan")
    colour = "#2c3235"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or (value == value and value >= step["value"]):
            colour = {"green": "#37872d", "red": "#c4162a", "orange": "#fa6400"}.get(
                step["color"], step["color"]
            )
    ax.set_facecolor(colour)
    ax.text(
        0.5,
        0.42,
        fmt_value(value, defaults.get("unit", "")),
        color="white",
        fontsize=18,
        ha="center",
        va="center",
        transform=ax.transAxes,
        weight="bold",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def table_rows(
    panel: dict[str, Any], prom: Prometheus, values: dict[str, str]
) -> tuple[list[str], list[list[str]]]:
    """Rows of a table panel: instant results merged on their labels (Grafana's merge)."""
    organize: dict[str, Any] = next(
        (t["options"] for t in panel.get("transformations", []) if t["id"] == "organize"), {}
    )
    hidden = {k for k, v in organize.get("excludeByName", {}).items() if v} | {"__name__"}
    renames = organize.get("renameByName", {})
    rows: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for target in panel["targets"]:
        for r in prom.instant(substitute(target["expr"], values)):
            key = tuple(sorted(r["metric"].items()))
            row = rows.setdefault(key, dict(key))
            row[f"Value #{target['refId']}"] = f"{float(r['value'][1]):.3g}"
    columns = [c for c in dict.fromkeys(k for row in rows.values() for k in row) if c not in hidden]
    order = organize.get("indexByName", {})
    columns.sort(key=lambda c: order.get(c, 100))
    if len(panel["targets"]) == 1:
        columns = [c for c in columns if c != "Value #A"]
    body = [[row.get(c, "") for c in columns] for row in rows.values()]
    if "rank" in columns:
        body.sort(key=lambda r: int(r[columns.index("rank")] or 0))
    return [substitute(renames.get(c, c), values) for c in columns], body


def draw_table(ax: Axes, panel: dict[str, Any], prom: Prometheus, values: dict[str, str]) -> None:
    header, body = table_rows(panel, prom, values)
    ax.axis("off")
    if not body:
        ax.text(0.5, 0.5, "no data", color=MUTED, ha="center", transform=ax.transAxes)
        return
    table = ax.table(
        cellText=[[c[:40] for c in row] for row in body[:12]],
        colLabels=header,
        loc="upper center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    for cell in table.get_celld().values():
        cell.set_facecolor(PANEL)
        cell.set_edgecolor("#2c3235")
        cell.get_text().set_color(FG)


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def draw_bars(ax: Axes, panel: dict[str, Any], prom: Prometheus, values: dict[str, str]) -> None:
    target = panel["targets"][0]
    result = prom.instant(substitute(target["expr"], values))
    names = [(legend(target["legendFormat"], r["metric"]), r) for r in result]
    names.sort(key=lambda pair: _natural(pair[0]))
    shown = names[:32]
    # One colour per first label (the model version, for the cluster-share panel).
    firsts = list(dict.fromkeys(name.split(" ")[0] for name, _ in shown))
    colours = [COLOURS[2 + firsts.index(name.split(" ")[0]) % 6] for name, _ in shown]
    ax.barh(range(len(shown)), [float(r["value"][1]) for _, r in shown], color=colours)
    ax.set_yticks(range(len(shown)), [name for name, _ in shown], fontsize=6)
    ax.invert_yaxis()


def _box(grid: dict[str, int], height: float, kind: str) -> tuple[float, float, float, float]:
    """Figure coordinates of a panel from its Grafana ``gridPos`` (24 columns, rows of 30 px)."""
    top = 1 - (TOP_INCHES + grid["y"] * ROW_INCHES) / height
    bottom = 1 - (TOP_INCHES + (grid["y"] + grid["h"]) * ROW_INCHES) / height
    row = ROW_INCHES / height
    # Plots leave room for tick labels left of and below them; every panel for its title.
    pad = {"stat": 0.0, "table": 0.0, "bargauge": 0.1}.get(kind, 0.025)
    below = 0.6 * row if pad else 0.004
    return (
        grid["x"] / 24 + 0.004 + pad,
        bottom + below,
        grid["w"] / 24 - 0.008 - pad,
        top - bottom - 0.7 * row - (below if pad else 0.0),
    )


def _draw(
    ax: Axes, panel: dict[str, Any], prom: Prometheus, values: dict[str, str], seconds: float
) -> None:
    if panel["type"] == "timeseries":
        draw_timeseries(ax, panel, prom, values, seconds)
    elif panel["type"] == "stat":
        draw_stat(ax, panel, prom, values)
    elif panel["type"] == "table":
        draw_table(ax, panel, prom, values)
    else:
        draw_bars(ax, panel, prom, values)


def render(
    board: dict[str, Any], prom: Prometheus, out: Path, seconds: float, given: dict[str, str]
) -> dict[str, str]:
    """Draw ``board`` to ``out`` (PNG); returns the variable values used."""
    values = resolve_variables(board, prom, given)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    height = rows * ROW_INCHES + TOP_INCHES
    fig = plt.figure(figsize=(18, height), facecolor=BG)
    for panel in board["panels"]:
        left, bottom, _, _ = _box(panel["gridPos"], height, "stat")
        if panel["type"] == "row":
            fig.text(0.005, bottom, panel["title"], color=FG, fontsize=11, weight="bold")
            continue
        ax = fig.add_axes(_box(panel["gridPos"], height, panel["type"]))
        _style(ax, substitute(panel["title"], values))
        _draw(ax, panel, prom, values, seconds)
    picked = ", ".join(f"{k}={v}" for k, v in values.items())
    fig.suptitle(
        f"{board['title']}   ({picked or 'no variables'}; PromQL from the dashboard, "
        "drawn by dashboards/preview.py)",
        color=FG,
        fontsize=10,
        x=0.005,
        y=1 - 0.15 / height,
        ha="left",
        va="top",
    )
    fig.savefig(out, dpi=110, facecolor=BG)
    plt.close(fig)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--dashboard", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--range", type=float, default=30.0, help="minutes of history")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.var)
    board = json.loads(args.dashboard.read_text())
    render(board, Prometheus(args.prometheus), args.out, args.range * 60, given)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
