#!/usr/bin/env bash
# Container tooling and the serving image, idempotently (docs/serving.md, "Image").
#
#   scripts/containers.sh            install podman & co. if missing, make the base, build the image
#   scripts/containers.sh --tools    only the apt packages
#   scripts/containers.sh --print    print the image reference the current sources build to
#   scripts/containers.sh --mlflow   the MLflow server image (PostgreSQL driver, S3/Azure Blob clients)
#
# No container registry is reachable from the project's machines, so the base root filesystem is
# made from the Debian mirror apt already uses (mmdebstrap) and imported into podman. Both the base
# and the image are tagged with a hash of their inputs: a second run with unchanged inputs does
# nothing but check that the tags exist. Prints the serving image reference on its last line.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CONTAINERS_CONF="$root/containers/containers.conf"
cache="$root/.shipway/containers"
suite=bookworm
base_packages=python3,python3-venv,ca-certificates
host_ca=/etc/ssl/certs/ca-certificates.crt

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_tools() {
    local missing=()
    for pair in podman:podman runc:runc mmdebstrap:mmdebstrap skopeo:skopeo newuidmap:uidmap; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]} with apt" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# The mirror and suites apt already uses (deb822 or one-line sources), as mmdebstrap arguments.
apt_mirrors() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) s=s" "$i} /^Components:/{c=$2}
             /^$/{if(u!="") for(n=split(s,a," ");n>0;n--) print "deb "u" "a[n]" "c; u="";s=""}
             END{if(u!="") for(n=split(s,a," ");n>0;n--) print "deb "u" "a[n]" "c}' "$f"
    done
    if [ -f /etc/apt/sources.list ]; then grep -E '^deb ' /etc/apt/sources.list || true; fi
}

base_image() {
    local mirrors hash tar ref
    mirrors=$(apt_mirrors | sort -u)
    hash=$(printf '%s\n%s\n%s\n' "$suite" "$base_packages" "$mirrors" | sha256sum | cut -c1-16)
    ref="localhost/shipway-base:$hash"
    if podman image exists "$ref"; then echo "$ref"; return 0; fi
    mkdir -p "$cache"
    tar="$cache/base-$hash.tar"
    if [ ! -s "$tar" ]; then
        echo "making the base root filesystem ($suite, $base_packages) from the Debian mirror" >&2
        local args=()
        while IFS= read -r line; do [ -n "$line" ] && args+=("$line"); done <<<"$mirrors"
        mmdebstrap --quiet --format=tar --variant=minbase --include="$base_packages" \
            "$suite" "$tar.part" "${args[@]}" >&2
        mv "$tar.part" "$tar"
    fi
    podman import --quiet --change 'CMD ["python3"]' "$tar" "$ref" >/dev/null
    echo "$ref"
}

# Everything that goes into an image, hashed: a change to any of them is a new tag.
image_hash() {
    local base=$1 kind=$2
    (cd "$root" && {
        echo "$base"
        sha256sum "containers/$kind.Dockerfile" "containers/$kind-requirements.txt" .dockerignore
        if [ "$kind" = serving ]; then
            find shipway_core shipway -type f -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum
        fi
    } | sha256sum | cut -c1-16)
}

# Build containers/<kind>.Dockerfile on the local base unless its input hash is already tagged.
build_image() {
    local kind=$1 base ref
    base=$(base_image)
    ref="localhost/shipway-$kind:$(image_hash "$base" "$kind")"
    if podman image exists "$ref"; then echo "$ref"; return 0; fi
    echo "building $ref on $base" >&2
    local cert_args=()
    if [ -f "$host_ca" ]; then
        # The host's bundle is mounted for pip only; it never lands in a layer.
        cert_args=(-v "$host_ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
    fi
    (cd "$root" && podman build --quiet --format docker --layers -f "containers/$kind.Dockerfile" \
        --build-arg "BASE=$base" "${cert_args[@]}" -t "$ref" -t "localhost/shipway-$kind:dev" . >/dev/null)
    # Drop this image's older input-hash tags so rebuilds do not pile up (in-use ones stay). The
    # untagged build-stage images are kept: they hold the pip layer cache, and only their small
    # top layer differs between builds.
    podman images --format '{{.Repository}}:{{.Tag}}' "localhost/shipway-$kind" \
        | grep -v -e ":dev$" -e "^$ref$" | xargs -r podman rmi >/dev/null 2>&1 || true
    echo "$ref"
}

case "${1:-}" in
    --tools) install_tools ;;
    --print) image=$(base_image); echo "localhost/shipway-serving:$(image_hash "$image" serving)" ;;
    --mlflow) install_tools; build_image mlflow ;;
    "") install_tools; build_image serving ;;
    *) echo "usage: $0 [--tools|--print|--mlflow]" >&2; exit 2 ;;
esac
