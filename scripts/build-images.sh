#!/usr/bin/env bash
# Build the three Kanaria images (operator, router, model server) with podman,
# each tagged by a hash of exactly what goes into it: so a warm run builds nothing.
#
#   scripts/build-images.sh            # build (or reuse) the images
#   scripts/build-images.sh --save     # also write docker-archive tarballs for
#                                      # `ctr -n k8s.io images import`
#   scripts/build-images.sh --prune    # also remove older kanaria-* images and archives
#
# The last line of stdout is one JSON object:
#   {"base": REF, "images": {"operator": REF, "router": REF, "server": REF},
#    "archives": {"operator": PATH, ...},        (archives only with --save)
#    "built": [NAME, ...]}                        (the images this run had to build)
#
# The build context is a snapshot of pyproject.toml, README.md, .dockerignore,
# the Dockerfiles and the package sources (no caches) taken at the start, so
# edits made while it builds cannot end up under a tag that does not describe
# them. Tag = hash of that snapshot, the image's Dockerfile, the base image ID
# and this script (without comments). Dependencies are resolved from PyPI when
# an image is built.
#
# Environment:
#   KANARIA_BASE_IMAGE  base image to build on (e.g. python:3.11.11-slim-bookworm,
#                       pulled if absent); unset: built from Debian packages by
#                       scripts/build-base-image.sh (no registry needed)
#   KANARIA_CA_BUNDLE   PEM bundle pip trusts in addition to the base image's CAs
#                       (a TLS-inspecting proxy's); default: this machine's system
#                       bundle if there is one; "none": no extra bundle
#   KANARIA_IMAGE_CACHE where archives and the lock live
#                       (default ${XDG_CACHE_HOME:-~/.cache}/kanaria/images)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SELF="$REPO/scripts/build-images.sh"
CACHE="${KANARIA_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kanaria/images}"
SAVE=0
PRUNE=0
for arg in "$@"; do
    case "$arg" in
        --save) SAVE=1 ;;
        --prune) PRUNE=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build-images: unknown argument $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

command -v podman >/dev/null || {
    echo "build-images: podman not found (make system-deps installs it)" >&2
    exit 1
}
# Root here may lack CAP_SYS_RESOURCE: podman's default nproc limit cannot be set then.
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

mkdir -p "$CACHE"
# One build at a time per cache (test sessions may start this concurrently).
exec 9>"$CACHE/.lock"
flock 9

log() { echo "build-images: $*" >&2; }

# The base image.
if [[ -n "${KANARIA_BASE_IMAGE:-}" ]]; then
    BASE="$KANARIA_BASE_IMAGE"
    podman image exists "$BASE" || podman pull --quiet "$BASE" >/dev/null
else
    BASE="$(bash "$REPO/scripts/build-base-image.sh" | tail -n1)"
fi
BASE_ID="$(podman image inspect --format '{{.Id}}' "$BASE")"

# The extra CA bundle for pip.
CA="${KANARIA_CA_BUNDLE:-}"
if [[ -z "$CA" ]]; then
    for candidate in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
        [[ -s "$candidate" ]] && { CA="$candidate"; break; }
    done
fi
SECRET=()
if [[ -n "$CA" && "$CA" != none ]]; then
    [[ -s "$CA" ]] || { log "KANARIA_CA_BUNDLE=$CA: no such file"; exit 1; }
    SECRET=(--secret "id=ca_bundle,src=$CA")
fi

# Snapshot of the build context.
CTX="$(mktemp -d)"
trap 'rm -rf "$CTX"' EXIT
SOURCES=(pyproject.toml README.md .dockerignore kanaria model_server/kanaria_server
    router/kanaria_router operator/kanaria_operator)
tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - "${SOURCES[@]}" \
    operator/Dockerfile router/Dockerfile model_server/Dockerfile | tar -C "$CTX" -xf -
SOURCES_HASH="$(
    cd "$CTX"
    find "${SOURCES[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum
)"
SCRIPT_HASH="$(sed '/^[[:space:]]*#/d' "$SELF" | sha256sum)" # comments do not change images

declare -A DIRS=([operator]=operator [router]=router [server]=model_server)
declare -A REFS=() ARCHIVES=()
BUILT=()
for name in operator router server; do
    dockerfile="$CTX/${DIRS[$name]}/Dockerfile"
    hash="$(
        {
            echo "$SOURCES_HASH"
            sha256sum <"$dockerfile"
            echo "$BASE_ID"
            echo "$SCRIPT_HASH"
        } | sha256sum | cut -c1-16
    )"
    ref="localhost/kanaria-$name:$hash"
    REFS[$name]="$ref"
    if podman image exists "$ref"; then
        log "$ref present"
    else
        log "building $ref"
        start=$SECONDS
        # Layer cache on: the dependency layer (pyproject.toml only) is reused when
        # only sources changed, so such a rebuild installs just the Kanaria wheel.
        podman build --quiet --layers "${ULIMITS[@]}" "${SECRET[@]}" \
            --build-arg "BASE_IMAGE=$BASE" -f "$dockerfile" -t "$ref" "$CTX" >/dev/null
        log "$ref built in $((SECONDS - start)) s"
        BUILT+=("\"$name\"")
    fi
    if ((SAVE)); then
        archive="$CACHE/kanaria-$name-$hash.tar"
        if [[ ! -s "$archive" ]]; then
            podman save --quiet --format docker-archive -o "$archive.tmp" "$ref"
            mv "$archive.tmp" "$archive"
            log "saved $archive"
        fi
        ARCHIVES[$name]="$archive"
    fi
done

if ((PRUNE)); then
    keep=" ${REFS[*]} "
    while read -r ref; do
        [[ "$keep" == *" $ref "* ]] || { podman rmi "$ref" >/dev/null && log "removed $ref"; }
    done < <(podman images --format '{{.Repository}}:{{.Tag}}' |
        grep -E '^localhost/kanaria-(operator|router|server):' || true)
    for archive in "$CACHE"/kanaria-*.tar; do
        [[ -e "$archive" ]] || continue
        [[ " ${ARCHIVES[*]:-} " == *" $archive "* ]] || { rm -f "$archive" && log "removed $archive"; }
    done
fi

json_map() {
    local -n map=$1
    local sep="" key
    printf '{'
    for key in operator router server; do
        [[ -n "${map[$key]:-}" ]] || continue
        printf '%s"%s": "%s"' "$sep" "$key" "${map[$key]}"
        sep=", "
    done
    printf '}'
}
built="$(IFS=,; echo "${BUILT[*]:-}")"
printf '{"base": "%s", "images": %s, "archives": %s, "built": [%s]}\n' \
    "$BASE" "$(json_map REFS)" "$(json_map ARCHIVES)" "${built//,/, }"
