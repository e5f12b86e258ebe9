#!/usr/bin/env bash
# Optional: the two real tools that tests/deploy uses when present, built from their Go modules
# (the Go module proxy is the only place this machine can get them):
#   - the docker compose CLI plugin  -> `docker compose config` in test_manifests.py
#   - kustomize                      -> `kustomize build` in test_k8s_manifests.py
# Without them those tests skip and the offline validators (compose-spec, kubernetes-validate)
# still run. Building compose takes ~10 minutes on 2 cores; kustomize ~2 minutes.
# Usage: deploy/tools/install-validators.sh [PREFIX]   (default /usr/local; needs Go >= 1.24)
set -euo pipefail

PREFIX="${1:-/usr/local}"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.7.1}"
command -v go >/dev/null || { echo "install-validators: needs Go (https://go.dev/dl or apt golang)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! command -v kustomize >/dev/null; then
    GOBIN="$work" go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
    install -D -m 0755 "$work/kustomize" "$PREFIX/bin/kustomize"
fi

if ! docker compose version >/dev/null 2>&1; then
    # The compose module's go.mod has exclude directives, so `go install mod@version` refuses it;
    # build it as a dependency of a throwaway module instead.
    (
        cd "$work"
        go mod init validators >/dev/null 2>&1
        printf '//go:build tools\npackage tools\nimport _ "github.com/docker/compose/v2/cmd"\n' > tools.go
        go get "github.com/docker/compose/v2/cmd@${COMPOSE_VERSION}"
        go mod tidy
        go build -o docker-compose github.com/docker/compose/v2/cmd
    )
    install -D -m 0755 "$work/docker-compose" "$PREFIX/lib/docker/cli-plugins/docker-compose"
fi

kustomize version
docker compose version
