#!/usr/bin/env bash
# The real tools that tests/deploy runs, built from their Go modules (the Go module proxy is the
# only place this machine can get them), each only when missing:
#   - kustomize                                   -> `kustomize build` in test_k8s_manifests.py
#   - the docker compose CLI plugin               -> `docker compose config` in test_manifests.py
#   - promtool with Kubernetes service discovery  -> the k8s scrape config in test_manifests.py
#     (Debian's promtool is built without it; this one is installed in PREFIX/bin, ahead of
#     /usr/bin on PATH)
# Measured on 2 cores: kustomize ~2 min, compose ~10 min, promtool ~5 min, once per machine
# (Go's module and build caches make a rebuild faster). `make test` runs this through
# install-test-deps.sh.
# Usage: deploy/tools/install-validators.sh [PREFIX]   (default /usr/local; needs Go >= 1.24)
set -euo pipefail

PREFIX="${1:-/usr/local}"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.7.1}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"  # the Go module of Prometheus 3.x
# Go is often installed outside PATH (the official tarball's /usr/local/go).
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    PATH="/usr/local/go/bin:$PATH"
fi

has_k8s_promtool() {
    command -v promtool >/dev/null || return 1
    local probe
    probe="$(mktemp --suffix=.yml)"
    printf 'scrape_configs:\n  - job_name: p\n    kubernetes_sd_configs: [{role: pod}]\n' > "$probe"
    promtool check config --syntax-only "$probe" >/dev/null 2>&1 || promtool check config "$probe" >/dev/null 2>&1
    local ok=$?
    rm -f "$probe"
    return $ok
}

need=()
command -v kustomize >/dev/null || need+=(kustomize)
docker compose version >/dev/null 2>&1 || need+=(compose)
has_k8s_promtool || need+=(promtool)
[ "${#need[@]}" -eq 0 ] && exit 0
command -v go >/dev/null || {
    echo "install-validators: building ${need[*]} needs Go >= 1.24 (https://go.dev/dl); install it and rerun" >&2
    exit 1
}
echo "install-validators: building ${need[*]} from their Go modules (minutes, once per machine)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for tool in "${need[@]}"; do
    case "$tool" in
    kustomize)
        GOBIN="$work" go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
        install -D -m 0755 "$work/kustomize" "$PREFIX/bin/kustomize"
        kustomize version
        ;;
    compose)
        # The compose module's go.mod has exclude directives, so `go install mod@version`
        # refuses it; build it as a dependency of a throwaway module instead.
        (
            mkdir "$work/compose" && cd "$work/compose"
            go mod init validators >/dev/null 2>&1
            printf '//go:build tools\npackage tools\nimport _ "github.com/docker/compose/v2/cmd"\n' > tools.go
            go get "github.com/docker/compose/v2/cmd@${COMPOSE_VERSION}"
            go mod tidy
            go build -o docker-compose github.com/docker/compose/v2/cmd
        )
        install -D -m 0755 "$work/compose/docker-compose" "$PREFIX/lib/docker/cli-plugins/docker-compose"
        docker compose version
        ;;
    promtool)
        GOBIN="$work" go install "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}"
        install -D -m 0755 "$work/promtool" "$PREFIX/bin/promtool"
        hash -r
        has_k8s_promtool || {
            echo "install-validators: $(command -v promtool) still lacks Kubernetes SD: is $PREFIX/bin ahead of /usr/bin on PATH?" >&2
            exit 1
        }
        promtool --version | head -1
        ;;
    esac
done
