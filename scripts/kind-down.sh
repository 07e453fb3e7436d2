#!/usr/bin/env bash
# Delete the kind cluster `make kind-up` created (KIND_CLUSTER, default kanaria).
set -euo pipefail
CLUSTER="${KIND_CLUSTER:-kanaria}"
command -v kind >/dev/null || { echo "[kind-down] error: kind not found on PATH" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER"
else
  echo "[kind-down] no kind cluster named $CLUSTER: nothing to delete" >&2
fi
