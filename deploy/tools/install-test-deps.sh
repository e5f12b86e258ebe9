#!/usr/bin/env bash
# Everything `make test` needs outside the venv, installed only when missing (idempotent; a second
# run does nothing and takes well under a second). `make test` runs it; so can you:
#   - Debian packages: a JDK and Maven (the local Kafka broker: deploy/kafka/), Prometheus and
#     promtool (alert-rule tests, a real scrape), Chromium (the report page in a real browser),
#     the docker client (`docker compose config` needs no engine), openssl (the secured
#     broker's client certificate, tests/source/test_kafka_security.py);
#   - deploy/tools/install-validators.sh: kustomize, the docker compose plugin and a promtool
#     with Kubernetes service discovery, built from their Go modules (Debian has none of them;
#     about 15 minutes on 2 cores, once per machine).
# `--broker`: only the JDK and Maven (what `make demo` needs).
# Needs root or sudo for apt, and Go >= 1.24 for the validators.
set -euo pipefail
broker_only=0
[ "${1:-}" = "--broker" ] && broker_only=1
here="$(cd "$(dirname "$0")" && pwd)"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

packages=()
command -v java >/dev/null 2>&1 || packages+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || packages+=(maven)
if [ "$broker_only" -eq 0 ]; then
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v docker >/dev/null 2>&1 || packages+=(docker.io)
# the secured broker's client certificate: keytool cannot write a PEM private key
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
fi

if [ "${#packages[@]}" -gt 0 ]; then
    echo "install-test-deps: installing Debian packages: ${packages[*]}"
    # Debian's prometheus package would start a service on :9090 at install time. The tests run
    # their own Prometheus on a free loopback port, so forbid service starts during the install
    # (policy-rc.d exit 101 = "action forbidden") and remove the guard afterwards if we made it.
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
    $SUDO apt-get install -y --no-install-recommends "${packages[@]}"
    # Where systemd manages services, keep the packaged Prometheus off as well.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

[ "$broker_only" -eq 1 ] || "$here/install-validators.sh"
