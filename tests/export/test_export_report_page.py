"""The report page in real headless Chromium: it loads, shows the comparison and its top features.

docs/report.png (the README's screenshot) is taken from a real ``saewatch demo``, not from these
fixed reports; README.md ("What the demo shows") gives the command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from export.drift_reports import BASELINE, CANDIDATE, DOWN, UP
from export.export_harness import Exporter

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=3000",  # let the page's script run before the DOM is dumped
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `make system-deps` (deploy/tools/install-test-deps.sh)", pytrace=False)
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result


def test_report_page_renders_the_comparison_and_top_features(
    drifting: Exporter, tmp_path: Path
) -> None:
    dom = chromium(tmp_path, "--dump-dom", drifting.url + "/").stdout.decode()
    assert f"{BASELINE} → {CANDIDATE}" in dom
    assert f"More frequent in {CANDIDATE}" in dom and f"Less frequent in {CANDIDATE}" in dom
    for _feature, label, *_ in (*UP[:10], *DOWN):
        if label and "<" not in label:
            assert label.replace("'", "&#x27;") in dom or label in dom, label
    assert '<span class="badge drift">drift</span>' in dom
    assert "too few events" in dom and "at least 100 are needed" in dom
    assert dom.count("<polyline") == 3  # one drift-score chart per comparison
    assert 'class="stack"' in dom  # cluster shares
    # The script ran: the verdict filter marked "all" as active.
    assert 'data-filter="all" class="active"' in dom or 'class="active" data-filter="all"' in dom
    # The label with markup stays text.
    assert "<script>alert(" not in dom


def test_report_page_screenshot(drifting: Exporter, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--window-size=1400,1900", f"--screenshot={shot}", drifting.url + "/")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a rendered page, not a blank one
