#!/usr/bin/env bash
# System tools the tests, the demo and the benchmarks run for real: Debian's
# prometheus (and promtool), wrk as load generator, nginx as benchmark baseline,
# shellcheck for the kind scripts, openssl for the test control plane, and the
# parts of a real single node: containerd, runc and the CNI plugins run the pods,
# podman builds the images, mmdebstrap builds their local base image, iptables
# and iproute2 seal the node's network; Java and Maven for the S3 test server.
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v taskset >/dev/null || need+=(util-linux)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v openssl >/dev/null || need+=(openssl)  # test control plane certificates
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v podman >/dev/null || need+=(podman)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v iptables >/dev/null || [[ -x /usr/sbin/iptables ]] || need+=(iptables)
command -v ip >/dev/null || [[ -x /usr/sbin/ip ]] || need+=(iproute2)
command -v conntrack >/dev/null || [[ -x /usr/sbin/conntrack ]] || need+=(conntrack)
# Java and Maven run S3Proxy, the S3-compatible server of the s3:// model tests
# (scripts/install-s3proxy.sh fetches it; the tests run that script themselves).
command -v java >/dev/null || need+=(default-jre-headless)
command -v mvn >/dev/null || need+=(maven)
((${#need[@]})) || exit 0
sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
echo "installing system packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The Debian package would start a system-wide Prometheus; tests run their own.
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
