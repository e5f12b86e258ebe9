"""The diff stage: pure functions from feature counts to drift results.

``plan_comparisons`` decides what to compare, ``compare`` diffs two :class:`FeatureCounts`,
``build_report`` does both for a whole :class:`DriftReport`, from a frozen
:class:`~saewatch.views.StateView`. Nothing here imports the state stage, and nothing reads the
live state: counts and examples come from the view, so one view always gives one report.
"""

from saewatch.diff.compare import compare
from saewatch.diff.dense import DenseTestResult, mmd_test
from saewatch.diff.divergence import js_divergence, null_divergence
from saewatch.diff.plan import plan_comparisons, resolve_counts
from saewatch.diff.report import build_report
from saewatch.diff.sequential import msprt_log_evidence, sequential_alarms
from saewatch.diff.stats import bh_qvalues, feature_tests, smoothed_log_odds

__all__ = [
    "DenseTestResult", "bh_qvalues", "build_report", "compare", "feature_tests", "js_divergence",
    "mmd_test", "msprt_log_evidence", "null_divergence", "plan_comparisons", "resolve_counts",
    "sequential_alarms", "smoothed_log_odds",
]
