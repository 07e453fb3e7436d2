#!/usr/bin/env bash
# Kanaria on a local kind cluster, for users with Docker:
#   1. create the cluster from kind-config.yaml (kept if it already exists),
#   2. build the three images (operator, router, model server) and `kind load` them,
#   3. with MONITORING=1, install kube-prometheus-stack (Prometheus Operator,
#      Prometheus, Grafana with its dashboard sidecar) into namespace monitoring,
#   4. `helm upgrade --install` the chart from helm/kanaria with those images
#      (and its monitoring objects when MONITORING=1),
#   5. apply a sample ModelDeployment (SAMPLE, default manifests/samples/canary.yaml)
#      into namespace SAMPLE_NAMESPACE (default ml); with DEMO_MODELS=1 (default)
#      two generated demo models are served in that namespace and the sample is
#      pointed at v1, so the rollout really runs (a sample's own URI must be
#      reachable from the cluster otherwise).
# Environment: KIND_CLUSTER (kanaria), IMAGE_TAG (dev), MONITORING (0|1),
# DEMO_MODELS (1|0), SAMPLE, SAMPLE_NAMESPACE, CONTAINER_ENGINE (docker),
# PYTHON (.venv/bin/python, with the kanaria package installed: make setup).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-kanaria}"
TAG="${IMAGE_TAG:-dev}"
MONITORING="${MONITORING:-0}"
SAMPLE="${SAMPLE:-manifests/samples/canary.yaml}"
SAMPLE_NAMESPACE="${SAMPLE_NAMESPACE:-ml}"
ENGINE="${CONTAINER_ENGINE:-docker}"
DEMO_MODELS="${DEMO_MODELS:-1}"
PYTHON="${PYTHON:-.venv/bin/python}"
KPS_RELEASE=kube-prometheus-stack

log() { printf '[kind-up] %s\n' "$*" >&2; }
die() { printf '[kind-up] error: %s\n' "$*" >&2; exit 1; }

[[ "$MONITORING" == 0 || "$MONITORING" == 1 ]] || die "MONITORING must be 0 or 1, not '$MONITORING'"
[[ "$DEMO_MODELS" == 0 || "$DEMO_MODELS" == 1 ]] || die "DEMO_MODELS must be 0 or 1, not '$DEMO_MODELS'"
[[ "$DEMO_MODELS" == 0 || -x "$PYTHON" ]] || die "$PYTHON not found: run make setup (or DEMO_MODELS=0)"
[[ -f "$SAMPLE" ]] || die "sample $SAMPLE not found (set SAMPLE=path/to/modeldeployment.yaml)"
for tool in "$ENGINE" kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH: install it first (see docs/images-and-clusters.md)"
done
"$ENGINE" info >/dev/null 2>&1 || die "$ENGINE is installed but its daemon does not answer: start it"

# --- 1. cluster
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "cluster $CLUSTER exists: reusing it"
else
  log "creating cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

# --- 2. images
declare -A dockerfiles=(
  [kanaria-operator]=operator/Dockerfile
  [kanaria-router]=router/Dockerfile
  [kanaria-server]=model_server/Dockerfile
)
for image in "${!dockerfiles[@]}"; do
  [[ -f "${dockerfiles[$image]}" ]] || die "${dockerfiles[$image]} is missing"
  log "building $image:$TAG"
  "$ENGINE" build -f "${dockerfiles[$image]}" -t "$image:$TAG" .
  log "loading $image:$TAG into $CLUSTER"
  kind load docker-image "$image:$TAG" --name "$CLUSTER"
done

# --- 3. monitoring (optional)
chart_args=()
if [[ "$MONITORING" == 1 ]]; then
  log "installing kube-prometheus-stack into namespace monitoring"
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
  helm repo update prometheus-community >/dev/null
  # Select every ServiceMonitor, PodMonitor and PrometheusRule, and let the
  # Grafana sidecar load dashboards from every namespace.
  helm upgrade --install "$KPS_RELEASE" prometheus-community/kube-prometheus-stack \
    --namespace monitoring --create-namespace --wait --timeout 10m \
    --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
    --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
    --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
    --set grafana.sidecar.dashboards.searchNamespace=ALL
  chart_args+=(
    --set serviceMonitor.enabled=true
    --set prometheusRule.enabled=true
    --set grafanaDashboard.enabled=true
  )
fi

if [[ "$MONITORING" == 0 ]]; then
  log "note: MONITORING=0 installs no Prometheus, so analysis gates measure Error and gated"
  log "      rollouts roll back; use MONITORING=1 to see a rollout promote on real metrics"
fi

# --- 4. Kanaria
log "installing the Kanaria chart into namespace kanaria-system"
helm upgrade --install kanaria helm/kanaria \
  --namespace kanaria-system --create-namespace --wait --timeout 5m \
  --set operator.image.repository=kanaria-operator --set operator.image.tag="$TAG" \
  --set router.image.repository=kanaria-router --set router.image.tag="$TAG" \
  --set modelServer.image.repository=kanaria-server --set modelServer.image.tag="$TAG" \
  --set operator.prometheusUrl=http://prometheus-operated.monitoring.svc:9090 \
  "${chart_args[@]}"

# --- 5. a sample, with demo models served inside the cluster
kubectl create namespace "$SAMPLE_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
sample_file="$SAMPLE"
rollout_hint=""
if [[ "$DEMO_MODELS" == 1 ]]; then
  log "generating demo models v1 and v2 and serving them in namespace $SAMPLE_NAMESPACE"
  demo_dir="$(mktemp -d)"
  trap 'rm -rf "$demo_dir"' EXIT
  url_base="http://kanaria-demo-models.$SAMPLE_NAMESPACE.svc:8000"
  mapfile -t demo < <("$PYTHON" scripts/kind_demo.py --models-dir "$demo_dir/models" \
    --sample "$SAMPLE" --url-base "$url_base" --out "$demo_dir/sample.yaml")
  ((${#demo[@]} == 2)) || die "scripts/kind_demo.py failed (is .venv set up? run make setup)"
  kubectl -n "$SAMPLE_NAMESPACE" create configmap kanaria-demo-models \
    --from-file="$demo_dir/models" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # A static file server in the model-server image (it has Python): no other image to pull.
  kubectl -n "$SAMPLE_NAMESPACE" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: kanaria-demo-models, labels: {app: kanaria-demo-models}}
spec:
  selector: {matchLabels: {app: kanaria-demo-models}}
  template:
    metadata: {labels: {app: kanaria-demo-models}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: files
          image: kanaria-server:$TAG
          imagePullPolicy: IfNotPresent
          command: [python, -m, http.server, "8000", --directory, /models]
          ports: [{name: http, containerPort: 8000}]
          resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 64Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: models, mountPath: /models}]
      volumes: [{name: models, configMap: {name: kanaria-demo-models}}]
---
apiVersion: v1
kind: Service
metadata: {name: kanaria-demo-models}
spec:
  selector: {app: kanaria-demo-models}
  ports: [{name: http, port: 8000, targetPort: http}]
YAML
  kubectl -n "$SAMPLE_NAMESPACE" rollout status deployment/kanaria-demo-models --timeout=180s
  sample_file="$demo_dir/sample.yaml"
  rollout_hint="kubectl -n $SAMPLE_NAMESPACE patch mdep ${demo[0]} --type merge -p '${demo[1]}'"
fi
kubectl apply -n "$SAMPLE_NAMESPACE" -f "$sample_file"
log "done. Next:"
log "  kubectl get mdep -n $SAMPLE_NAMESPACE -w"
if [[ -n "$rollout_hint" ]]; then
  log "  roll out v2:  $rollout_hint"
fi
if [[ "$MONITORING" == 1 ]]; then
  log "  kubectl -n monitoring port-forward svc/$KPS_RELEASE-grafana 3000:80   # Grafana (admin / prom-operator)"
fi
log "  make kind-down   # delete the cluster"
