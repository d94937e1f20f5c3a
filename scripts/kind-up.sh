#!/usr/bin/env bash
# Create a Kind cluster, install Kubeflow Pipelines 2.17.0 (standalone, env/platform-agnostic), wait for it,
# then port-forward the KFP UI and API to http://localhost:8080 (runs until Ctrl-C; the cluster stays up).
# The sequence is the one in the KFP installation guide
# (https://www.kubeflow.org/docs/components/pipelines/operator-guides/installation/) with the platform-agnostic
# overlay, which kubeflow/pipelines' own backend/Makefile target kind-cluster-agnostic uses on Kind.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KFP_VERSION="2.17.0"   # the backend that matches the kfp==2.17.0 SDK pinned in pyproject.toml
KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
KIND_CONFIG="configs/kind/cluster.yaml"
UI_PORT="8080"

usage() {
  cat <<EOF
usage: ${0##*/} [--name CLUSTER] [--dry-run]

  --name      Kind cluster name (default: \$CLUSTER or $DEFAULT_CLUSTER); kubectl uses the context kind-CLUSTER
  --dry-run   print every command, run nothing
  KIND_NODE_IMAGE=kindest/node:vX.Y.Z@sha256:...  pins the node image (default: the kind release's own)
EOF
}

cluster="${CLUSTER:-$DEFAULT_CLUSTER}"
while (($#)); do
  case "$1" in
    --name) cluster="${2:?--name needs a value}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

need kind kubectl
cd "$WAKELINE_ROOT"
# Every kubectl names the context, so a different current context is never touched.
kctl=(kubectl --context "kind-$cluster")

create=(kind create cluster --name "$cluster" --config "$KIND_CONFIG" --wait 5m)
[[ -z "${KIND_NODE_IMAGE:-}" ]] || create+=(--image "$KIND_NODE_IMAGE")
existing=""
((DRY_RUN)) || existing="$(kind get clusters 2>/dev/null || true)"
if grep -qx -- "$cluster" <<<"$existing"; then
  note "Kind cluster '$cluster' exists; installing KFP into it."
else
  run "${create[@]}"
fi

run "${kctl[@]}" apply -k "$KFP_MANIFESTS/cluster-scoped-resources?ref=$KFP_VERSION"
run "${kctl[@]}" wait --for condition=established --timeout=60s crd/applications.app.k8s.io
run "${kctl[@]}" apply -k "$KFP_MANIFESTS/env/platform-agnostic?ref=$KFP_VERSION"
# A fresh install restarts a few pods while MySQL comes up; 20 minutes covers a cold image pull on a laptop.
run "${kctl[@]}" -n kubeflow wait --for condition=Available --timeout=20m deployment --all
((DRY_RUN)) || note "KFP $KFP_VERSION is up. UI and API: http://localhost:$UI_PORT (Ctrl-C stops the port-forward, not the cluster)."
run "${kctl[@]}" -n kubeflow port-forward svc/ml-pipeline-ui "$UI_PORT:80"
