#!/usr/bin/env bash
# A Python base image built from Debian packages alone, for machines that reach
# a Debian mirror but no container registry (the component Dockerfiles take it
# as BASE_IMAGE; their default stays the public python:*-slim image).
#
#   scripts/build-base-image.sh            # prints the image reference last
#
# The root filesystem is a minbase bookworm made by mmdebstrap from the apt
# sources this machine already uses (read with `apt-get indextargets`, so no
# mirror host is written here), imported with `podman import`. The tag is a
# hash of what decides the content: this script (without comments), the
# suite, the package list and the sources lines. An image with that tag already present is reused.
#
# Environment:
#   KANARIA_DEBIAN_SUITE   suite (default bookworm: Python 3.11, as the public image)
#   KANARIA_DEBIAN_MIRROR  mirror URI to use instead of the host's apt sources
#   KANARIA_BASE_REPO      image name (default localhost/kanaria-base)
set -euo pipefail

SUITE="${KANARIA_DEBIAN_SUITE:-bookworm}"
REPO="${KANARIA_BASE_REPO:-localhost/kanaria-base}"
INCLUDE="python3,python3-pip,python3-venv,python-is-python3,ca-certificates"

need() { command -v "$1" >/dev/null || { echo "build-base-image: $1 not found ($2)" >&2; exit 1; }; }
need mmdebstrap "make system-deps installs it"
need podman "make system-deps installs it"

# One-line apt sources for SUITE, SUITE-updates and SUITE-security: from
# KANARIA_DEBIAN_MIRROR if set, else from the host's configured Debian
# repositories of those suites (component main only).
sources_lines() {
    if [[ -n "${KANARIA_DEBIAN_MIRROR:-}" ]]; then
        echo "deb ${KANARIA_DEBIAN_MIRROR} ${SUITE} main"
        echo "deb ${KANARIA_DEBIAN_MIRROR} ${SUITE}-updates main"
        return
    fi
    # shellcheck disable=SC2016  # $(...) are apt's format fields, not shell
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' \
        | awk -v s="$SUITE" '$3 == "main" && ($2 == s || $2 == s "-updates" || $2 == s "-security") {
              print "deb " $1 " " $2 " main" }' \
        | sort -u
}

SOURCES="$(sources_lines)"
if ! grep -q " ${SUITE} main$" <<<"$SOURCES"; then
    echo "build-base-image: no apt source for '${SUITE} main' on this host;" \
        "set KANARIA_DEBIAN_MIRROR (e.g. a Debian mirror URI)" >&2
    exit 1
fi

HASH="$(
    {
        sed '/^[[:space:]]*#/d' "$0" # comments do not change the image
        echo "$SUITE"
        echo "$INCLUDE"
        echo "$SOURCES"
    } | sha256sum | cut -c1-16
)"
REF="${REPO}:${HASH}"

if podman image exists "$REF"; then
    echo "build-base-image: $REF present" >&2
    echo "$REF"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "$SOURCES" >"$WORK/sources.list"
echo "build-base-image: mmdebstrap $SUITE from:" >&2
sed 's/^/  /' "$WORK/sources.list" >&2

start=$SECONDS
# Documentation, man pages and translations are dropped: the image runs services.
mmdebstrap --variant=minbase --include="$INCLUDE" \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --quiet \
    "$SUITE" "$WORK/rootfs.tar" "$WORK/sources.list" >&2

podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "kanaria base: Debian ${SUITE} minbase + ${INCLUDE}" \
    --quiet "$WORK/rootfs.tar" "$REF" >/dev/null
echo "build-base-image: $REF built in $((SECONDS - start)) s" >&2
echo "$REF"
