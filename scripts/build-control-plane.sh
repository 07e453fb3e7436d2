#!/usr/bin/env bash
# Build the binaries of a real Kubernetes control plane for the test suite,
# the way controller-runtime's envtest ships them, but compiled from the Go
# module proxy because this machine has no container engine and no other
# download source.
#
# Output: a version-keyed directory (printed on the last line of stdout) that
# holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kwok and helm; the node parts kubelet, kube-proxy, a CoreDNS with only the
# plugins a sealed test cluster uses, and the pause binary (static, from the
# kubernetes module's own pause.c) for the sandbox image; plus kwok-stages.yaml (kwok's own "fast" node and pod stages,
# copied from its module: the kwok binary simulates nothing without them). A
# second run finds them and builds nothing. If KUBEBUILDER_ASSETS points at a
# directory that already has all of these, that directory is used as it is.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm
  kubelet kube-proxy coredns pause)

log() { printf '[control-plane] %s\n' "$*" >&2; }

STAGES=kwok-stages.yaml

have_all() {
  local dir="$1" b
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
  [[ -s "$dir/$STAGES" ]]
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && have_all "$KUBEBUILDER_ASSETS"; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

CACHE_ROOT="${KANARIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kanaria}"
OUT="$CACHE_ROOT/control-plane/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_coredns-${COREDNS_VERSION}"
if have_all "$OUT"; then
  log "cached: $OUT"
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build the control plane"; exit 1; }
mkdir -p "$OUT"
# One build at a time: a second caller (a test that needs helm while make test builds
# in the background) waits for the first and then finds everything built.
exec 9>"$OUT/.lock"
flock 9
if have_all "$OUT"; then
  log "built by another run meanwhile: $OUT"
  echo "$OUT"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS="-mod=mod" CGO_ENABLED=0 GOTOOLCHAIN=local
start=$SECONDS

# --- etcd: a wrapper module so that etcd's own relative replace lines do not
# get in the way of building a tagged release.
if [[ ! -x "$OUT/etcd" ]]; then
  log "building etcd $ETCD_VERSION"
  mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
  go mod init kanaria.local/etcd-build >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
fi

# --- Kubernetes: k8s.io/kubernetes requires its staging modules at v0.0.0 and
# replaces them with ./staging paths, which do not exist in the module zip.
# Read the list from its own go.mod and map each to the matching v0.X.Y tag.
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
have_all_k8s() {
  local c
  for c in "${K8S_CMDS[@]}"; do [[ -x "$OUT/$c" ]] || return 1; done
}
if ! have_all_k8s; then
  log "building Kubernetes $K8S_VERSION (${K8S_CMDS[*]})"
  staging_version="v0.${K8S_VERSION#v1.}"
  mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  {
    echo "module kanaria.local/k8s-build"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" \
      | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  log "$(grep -c '^replace' go.mod) staging modules mapped to $staging_version"
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  pkgs=(); for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go mod tidy >/dev/null 2>&1 || true
  for p in "${pkgs[@]}"; do go get "$p@${K8S_VERSION}" >/dev/null 2>&1 || true; done
  go build -trimpath -ldflags "$ldflags" -o "$OUT/" "${pkgs[@]}"
fi

# --- kwok: fake nodes and pods, so that Deployments become Available without a kubelet.
if [[ ! -x "$OUT/kwok" ]]; then
  log "building kwok $KWOK_VERSION"
  GOBIN="$OUT" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
fi

# --- kwok's stages: node initialisation + lease heartbeat, pods Ready/Complete/deleted.
if [[ ! -s "$OUT/$STAGES" ]]; then
  log "writing $STAGES from sigs.k8s.io/kwok@$KWOK_VERSION"
  stage_dir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage"
  [[ -d "$stage_dir" ]] || (cd "$WORK" && go mod download "sigs.k8s.io/kwok@${KWOK_VERSION}")
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$stage_dir/$f"
    done
  } > "$OUT/$STAGES.tmp"
  mv "$OUT/$STAGES.tmp" "$OUT/$STAGES"
fi

# --- helm, for the chart tests.
if [[ ! -x "$OUT/helm" ]]; then
  log "building helm $HELM_VERSION"
  GOBIN="$OUT" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi

# --- pause: the sandbox image's only binary, from the kubernetes module's own source.
if [[ ! -x "$OUT/pause" ]]; then
  log "building pause from k8s.io/kubernetes@$K8S_VERSION"
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (mkdir -p "$WORK/pause" && cd "$WORK/pause" && go mod download "k8s.io/kubernetes@${K8S_VERSION}")
  command -v gcc >/dev/null || { log "gcc is required to build the pause binary"; exit 1; }
  gcc -Os -static -DVERSION="\"${K8S_VERSION}\"" -o "$OUT/pause" "$src"
  strip "$OUT/pause" 2>/dev/null || true
fi

# --- CoreDNS with only the plugins a sealed cluster needs (no forward: nothing
# is resolved upstream). Registering fewer plugins also builds in about a minute.
if [[ ! -x "$OUT/coredns" ]]; then
  log "building CoreDNS $COREDNS_VERSION"
  mkdir -p "$WORK/coredns" && cd "$WORK/coredns"
  cat > main.go <<'GO'
// A CoreDNS with the plugins a sealed Kubernetes test cluster needs.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	// The order in which a query passes the plugins, as in CoreDNS's plugin.cfg.
	dnsserver.Directives = []string{
		"reload", "bind", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes",
	}
}

func main() { coremain.Run() }
GO
  go mod init kanaria.local/coredns-build >/dev/null 2>&1
  go get "github.com/coredns/coredns@${COREDNS_VERSION}" >/dev/null 2>&1
  go mod tidy >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT/coredns" .
fi

have_all "$OUT" || { log "build incomplete in $OUT"; exit 1; }
log "built in $((SECONDS - start))s: $OUT"
echo "$OUT"
