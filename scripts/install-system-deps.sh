#!/usr/bin/env bash
# System tools the tests, the demo and the benchmarks run for real: Debian's
# prometheus (and promtool), wrk as load generator, nginx as benchmark baseline,
# shellcheck for the kind scripts, openssl for the test control plane.
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v taskset >/dev/null || need+=(util-linux)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v openssl >/dev/null || need+=(openssl)  # test control plane certificates
((${#need[@]})) || exit 0
sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
echo "installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The Debian package would start a system-wide Prometheus; tests run their own.
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
