"""The watched-behaviours dashboard: one row of panels per behaviour (Grafana ``repeat``).

Behaviours are configured, so the ``behaviour`` variable lists them from
``saewatch_behaviour_share`` and every panel repeats once per selected behaviour: its share per
version with the 95% interval, and its version changes with the always-valid test's alarm.
"""

from __future__ import annotations

from typing import Any

from grafana_model import Panel, dashboard, panel, row, target, variable

KEY = 'behaviour="$behaviour"'


def _repeated(p: Panel) -> Panel:
    p.update({"repeat": "behaviour", "repeatDirection": "v", "maxPerRow": 1})
    return p


def behaviours() -> dict[str, Any]:
    share = _repeated(panel(
        "timeseries", "$behaviour: share of events per version",
        [target(f"saewatch:behaviour_share:max{{{KEY}}}", "{{model_id}} {{model_version}}"),
         target(f"max by (model_id, model_version) (saewatch_behaviour_share_ci_low{{{KEY}}})",
                "{{model_id}} {{model_version}} 95% low", "B"),
         target(f"max by (model_id, model_version) (saewatch_behaviour_share_ci_high{{{KEY}}})",
                "{{model_id}} {{model_version}} 95% high", "C")],
        (0, 1, 16, 8), "percentunit",
        "Share of events showing the behaviour, all events scored since it was defined "
        "(retrieval-ring events included), with its 95% Wilson interval."))
    change = _repeated(panel(
        "timeseries", "$behaviour: change between versions",
        [target(f"saewatch:behaviour_share_change:max{{{KEY}}}",
                "{{model_id}} {{baseline}} → {{candidate}}"),
         target(f"saewatch:behaviour_alarm:max{{{KEY}}}",
                "alarm {{model_id}} {{baseline}} → {{candidate}}", "B")],
        (16, 1, 8, 8), "percentunit",
        "Candidate minus baseline share; 'alarm' is 1 once the always-valid test rejected "
        "(the SaewatchBehaviourRose alert fires on a rise of over 2 points with it)."))
    var = variable("behaviour", "label_values(saewatch_behaviour_share, behaviour)",
                   "Behaviour")
    var.update({"includeAll": True, "multi": True})
    return dashboard("saewatch-behaviours", "saewatch · watched behaviours",
                     [row("Behaviours", 0), share, change], [var],
                     "Watched behaviours defined by examples: share per model version and "
                     "version changes with their anytime-valid test.")
