#!/usr/bin/env bash
# The Kubernetes target's test control plane and the real pulumi-kubernetes provider, built from
# Go modules (docs/engine.md, "Kubernetes control plane"). Only the Kubernetes integration tests
# need these, so `make up` never builds them; scripts/test.sh starts this script in the
# background while the rest of the suite runs. Each binary is cached under .shipway/tools/bin,
# keyed by its module's go.mod + go.sum: a second run with unchanged modules does nothing.
#
#   shipway-kube                 etcd + kube-apiserver + kube-controller-manager + kube-scheduler
#                                (one multi-call binary, k8s.io/kubernetes v1.34.4, etcd v3.6.4)
#   kwok                         simulated nodes and pod readiness (sigs.k8s.io/kwok v0.8.0)
#   pulumi-resource-kubernetes   pulumi-kubernetes v4.25.0, installed into PULUMI_HOME as a plugin
#
# Writes .shipway/tools/kube-tools.done (or .failed with the log's tail) when it ends.
#
#   scripts/kube-tools.sh --background   start it detached (unless it is already running), log to
#                                        .shipway/tools/kube-tools.log, pid in kube-tools.pid
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "${1:-}" = --background ]; then
  mkdir -p .shipway/tools
  pid_file=.shipway/tools/kube-tools.pid
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then exit 0; fi
  command -v go >/dev/null 2>&1 || exit 0  # no Go yet: scripts/setup.sh installs it, test.sh retries
  rm -f .shipway/tools/kube-tools.done .shipway/tools/kube-tools.failed
  echo "== $(date -u +%FT%TZ) kube-tools.sh" >> .shipway/tools/kube-tools.log
  nohup nice -n 5 "$0" >> .shipway/tools/kube-tools.log 2>&1 < /dev/null &
  echo $! > "$pid_file"
  exit 0
fi
BIN="$root/.shipway/tools/bin"
state="$root/.shipway/tools"
KUBE_VERSION=v1.34.4
KUBE_MINOR=34
PROVIDER_VERSION=4.25.0
mkdir -p "$BIN"
rm -f "$state/kube-tools.done" "$state/kube-tools.failed"
trap 'rc=$?; [ $rc = 0 ] || echo "kube-tools.sh failed ($rc)" > "$state/kube-tools.failed"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
log() { printf '\033[1m[kube-tools]\033[0m %s\n' "$*" >&2; }

stamp_of() { sha256sum "tools/$1/go.mod" "tools/$1/go.sum" "tools/$1"/*.go | sha256sum | cut -c1-16; }
fresh() { # binary module-dir
  [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.stamp" 2>/dev/null)" = "$(stamp_of "$2")" ]
}
built() { stamp_of "$2" > "$BIN/.$1.stamp"; }

t0=$(date +%s)
if ! fresh shipway-kube kube; then
  log "building shipway-kube (kube-apiserver/controller-manager/scheduler $KUBE_VERSION + etcd): ~20 min cold on 2 cores"
  v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
  stamp="-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$KUBE_MINOR -X $v.gitTreeState=clean"
  stamp="$stamp -X $cv.gitVersion=$KUBE_VERSION -X $cv.gitMajor=1 -X $cv.gitMinor=$KUBE_MINOR -X $cv.gitTreeState=clean"
  (cd tools/kube && go build -trimpath -ldflags "-s -w $stamp" -o "$BIN/shipway-kube" .)
  built shipway-kube kube
fi
if ! fresh kwok kwok; then
  log "building kwok v0.8.0"
  (cd tools/kwok && go build -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v0.8.0" \
     -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
  built kwok kwok
fi
if ! fresh pulumi-resource-kubernetes pulumi-kubernetes; then
  log "building pulumi-resource-kubernetes $PROVIDER_VERSION: ~14 min cold on 2 cores, ~4 GB"
  # `go mod download -json` (not `go list -m`): on a cold module cache only download fetches the zip.
  moddir=$(cd tools/pulumi-kubernetes && go mod download -json github.com/pulumi/pulumi-kubernetes/provider/v4 \
           | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [ -d "$moddir/cmd/pulumi-resource-kubernetes" ] || { log "provider module not found (go mod download)"; exit 1; }
  # What the provider's `go generate` does: its schema and mapping, versioned, as embed files.
  # (Run inside this module, whose go.sum covers the generator's imports; _generate is scratch.)
  work=tools/pulumi-kubernetes/_generate
  rm -rf "$work"; mkdir -p "$work"
  cp "$moddir/cmd/pulumi-resource-kubernetes/"{generate.go,schema.json,terraform-mapping.json} "$work/"
  chmod u+w "$work"/*
  (cd "$work" && VERSION=$PROVIDER_VERSION go run ./generate.go)
  mv "$work/schema-embed.json" "$work/terraform-mapping-embed.json" tools/pulumi-kubernetes/
  rm -rf "$work"
  (cd tools/pulumi-kubernetes && go build -trimpath \
     -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PROVIDER_VERSION" \
     -o "$BIN/pulumi-resource-kubernetes" .)
  built pulumi-resource-kubernetes pulumi-kubernetes
fi
# The plugin goes into the project's PULUMI_HOME from the file just built (never a download),
# with the pulumi CLI scripts/setup.sh builds (it may still be building when this started).
for _ in $(seq 1 360); do
  [ -x "$BIN/pulumi" ] && "$BIN/pulumi" version >/dev/null 2>&1 && break
  sleep 5
done
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
plugin_dir="$PULUMI_HOME/plugins/resource-kubernetes-v$PROVIDER_VERSION"
if ! cmp -s "$BIN/pulumi-resource-kubernetes" "$plugin_dir/pulumi-resource-kubernetes" 2>/dev/null; then
  pulumi plugin rm resource kubernetes "$PROVIDER_VERSION" --yes >/dev/null 2>&1 || true
  pulumi plugin install resource kubernetes "$PROVIDER_VERSION" --file "$BIN/pulumi-resource-kubernetes" >/dev/null
fi
log "ready in $(( $(date +%s) - t0 ))s"
touch "$state/kube-tools.done"
