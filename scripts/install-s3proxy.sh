#!/usr/bin/env bash
# Install S3Proxy, the S3-compatible server the s3:// model tests run against on
# 127.0.0.1 (its filesystem backend, real SigV4 authentication: it answers
# NoSuchBucket, NoSuchKey, AccessDenied, InvalidAccessKeyId and SignatureDoesNotMatch
# as S3 does). It is the upstream project's own single jar (jar-with-dependencies)
# from Maven Central, fetched with Maven and checked against a pinned SHA-256; it
# runs on the machine's Java 17.
#
# Why not a Go build from the module proxy: versitygw (posix backend) took 24 minutes
# to compile cold on this 2-core machine under load; this takes about a minute and a
# half cold on the same machine (Maven's own plugins included), well under a second
# once cached. MinIO is AGPL.
#
# Output: the jar's path on the last line of stdout. A second run finds it and does
# nothing (no network). Two runs at once wait for each other (flock).
#
# Environment: S3PROXY_VERSION and S3PROXY_SHA256 (defaults below; change both
# together), KANARIA_CACHE (default ~/.cache/kanaria).
set -euo pipefail

VERSION="${S3PROXY_VERSION:-4.1.0}"
SHA256="${S3PROXY_SHA256:-a4d025969aaf796616ed4b1e2491d87d455ce84bb28cb9db086b2e6aaa68b48d}"
CACHE_ROOT="${KANARIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kanaria}"
DIR="$CACHE_ROOT/s3proxy/$VERSION"
JAR="$DIR/s3proxy.jar"

log() { printf '[s3proxy] %s\n' "$*" >&2; }

if [[ -s "$JAR" ]]; then
  log "cached: $JAR"
  echo "$JAR"
  exit 0
fi

for tool in java mvn; do
  command -v "$tool" >/dev/null || { log "$tool is required (make system-deps installs it)"; exit 1; }
done

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock 9
if [[ -s "$JAR" ]]; then  # made by a run we waited for
  echo "$JAR"
  exit 0
fi
start=$SECONDS
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log "fetching org.gaul:s3proxy:$VERSION (jar-with-dependencies) with Maven"
mvn -B -q -Dstyle.color=never dependency:copy \
  "-Dartifact=org.gaul:s3proxy:$VERSION:jar:jar-with-dependencies" \
  "-DoutputDirectory=$WORK" -Dmdep.stripVersion=true >&2
got="$WORK/s3proxy-jar-with-dependencies.jar"
[[ -s "$got" ]] || { log "Maven did not produce $got"; exit 1; }
actual="$(sha256sum "$got" | cut -d' ' -f1)"
if [[ "$actual" != "$SHA256" ]]; then
  log "SHA-256 of s3proxy $VERSION is $actual, expected $SHA256: refusing it"
  exit 1
fi
mv "$got" "$JAR.tmp" && mv "$JAR.tmp" "$JAR"
log "installed in $((SECONDS - start))s: $JAR"
echo "$JAR"
