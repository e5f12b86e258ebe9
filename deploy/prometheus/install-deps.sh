#!/usr/bin/env bash
# System packages the test suite needs: Prometheus + promtool (alert-rule tests, a real scrape)
# and Chromium (the report page is checked in a real headless browser).
# Idempotent: does nothing when both are already on PATH.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Debian's prometheus package would start a service on :9090 at install time. The tests run their
# own Prometheus on a free loopback port, so forbid service starts during the install (policy-rc.d
# exit 101 = "action forbidden") and remove the guard afterwards if we created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus chromium

# Where systemd manages services, keep the packaged one off as well.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
