#!/usr/bin/env bash
# Shipway setup: everything the project needs, from a machine with only the OS image.
# Idempotent and cached: a second run takes seconds.
#   - Debian packages: Prometheus (+promtool), Alertmanager (+amtool), Chromium (report tests), wrk (load),
#     podman + runc + mmdebstrap + skopeo (the serving image is built and run in the tests; see
#     scripts/containers.sh, which builds it, cached by its inputs)
#   - Python venv (.venv) with the pinned project + dev dependencies
#   - the Pulumi CLI and its Python language host, built from Go modules (no download site
#     is reachable from our machines), plus our plugin scripts, in .shipway/tools/bin
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN="$ROOT/.shipway/tools/bin"
PULUMI_VERSION=v3.274.1
LANGHOST_SDK=v3.188.0
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
t0=$(date +%s)

# --- Debian packages --------------------------------------------------------------------
need=()
for pair in prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
            amtool:prometheus-alertmanager chromium:chromium wrk:wrk git:git go:golang-go \
            podman:podman runc:runc mmdebstrap:mmdebstrap skopeo:skopeo newuidmap:uidmap; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Packages must not start their own daemons (we start Prometheus ourselves, on our ports).
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  # shellcheck disable=SC2046 # word splitting of the package list is intended
  $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
  if [ $created_policy = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

# --- Python -----------------------------------------------------------------------------
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.shipway-stamp 2>/dev/null)" != "$stamp" ]; then
  log "creating .venv and installing pinned dependencies (first run: a few minutes)"
  [ -x .venv/bin/python ] || python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$stamp" > .venv/.shipway-stamp
fi

# --- Pulumi CLI + Python language host from Go modules ----------------------------------
mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
build() { # module-dir output version-var version package
  (cd "tools/$1" && go build -trimpath -tags osusergo,grpcnotrace \
     -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$4" -o "$BIN/$2" "$5")
}
if [ "$("$BIN/pulumi" version 2>/dev/null)" != "$PULUMI_VERSION" ]; then
  log "building the Pulumi CLI $PULUMI_VERSION from Go modules (first run: ~6 minutes)"
  build pulumi pulumi "" "$PULUMI_VERSION" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
fi
if [ ! -x "$BIN/pulumi-language-python" ] || [ tools/pulumi-language-python/go.mod -nt "$BIN/pulumi-language-python" ]; then
  log "building Pulumi's Python language host from Go modules"
  build pulumi-language-python pulumi-language-python "" "$LANGHOST_SDK" \
    github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
fi
# Jaeger v2 (traces on the local stack), actionlint (workflow lint in the tests), the log store and the collector.
stamp_build() { # name module-dir package
  local sum; sum=$(sha256sum "tools/$2/go.mod" "tools/$2/go.sum" | sha256sum | cut -c1-16)
  if [ ! -x "$BIN/$1" ] || [ "$(cat "$BIN/.$1.stamp" 2>/dev/null)" != "$sum" ]; then
    log "building $1 from Go modules"
    (cd "tools/$2" && go build -trimpath -ldflags "-s -w" -o "$BIN/$1" "$3")
    echo "$sum" > "$BIN/.$1.stamp"
  fi
}
stamp_build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger
stamp_build actionlint actionlint github.com/rhysd/actionlint/cmd/actionlint
# The telemetry hub of the local stack (docs/observability.md): VictoriaLogs v1.52.2 (the log
# store; ~30 s, ~0.5 GB) and our OpenTelemetry Collector distribution (tools/otelcol: core
# v0.165.0 + contrib v0.165.1; first build several minutes, see docs/engine.md).
stamp_build victoria-logs victorialogs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
stamp_build otelcol-shipway otelcol .
install -m 0755 tools/scripts/pulumi-language-python-exec tools/scripts/pulumi-resource-pulumi-python "$BIN/"

log "ready in $(( $(date +%s) - t0 ))s: $("$BIN/pulumi" version) at $BIN"
