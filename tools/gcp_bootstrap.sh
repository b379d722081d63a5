#!/usr/bin/env bash
# From an empty Google Cloud project to a cluster `skaffold run -p <env>` can deploy to. Once per
# environment; safe to re-run (every step checks before it creates). Reads the environment's ONE values
# file, helm/values-<env>.yaml: gcp.projectId, gcp.region, ingest.ingress.staticIpName.
#
#   bash tools/gcp_bootstrap.sh staging
#
# Needs gcloud (logged in as a project owner) and kubectl. Steps:
#   1. APIs
#   2. a Standard GKE cluster: Workload Identity, the Config Connector add-on, the Secret Manager add-on,
#      Managed Prometheus with the HPA kube-state metrics, Dataplane V2 (NetworkPolicies enforced)
#   3. Config Connector in namespaced mode: its Google service account and roles, the Workload Identity
#      binding, the ConfigConnector object, the namespace and its ConfigConnectorContext
#   4. Firestore databases with delete protection, PITR and a daily backup schedule
#   5. Artifact Registry repository, global static IP, Custom Metrics Stackdriver Adapter
#   6. what is left to you: DNS, secret values (printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."

ENV="${1:?usage: tools/gcp_bootstrap.sh <staging|production>}"
VALUES="helm/values-$ENV.yaml"
[[ -f "$VALUES" ]] || { echo "no $VALUES" >&2; exit 1; }
value() { # dotted.key -> value from the values file (plain YAML scalars, read with python)
    python3 - "$VALUES" "$1" <<'EOF'
import sys
import yaml

node = yaml.safe_load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    node = node[key]
print(node)
EOF
}
PROJECT="$(value gcp.projectId)"
REGION="$(value gcp.region)"
STATIC_IP="$(value ingest.ingress.staticIpName)"
CLUSTER="${CLUSTER:-coursebridge-$ENV}"
NS=coursebridge
KCC_SA="coursebridge-kcc"
KCC_SA_EMAIL="$KCC_SA@$PROJECT.iam.gserviceaccount.com"
G=(gcloud --project "$PROJECT" --quiet)
step() { printf '\n== %s\n' "$*"; }

step "1. APIs ($PROJECT)"
"${G[@]}" services enable container.googleapis.com artifactregistry.googleapis.com pubsub.googleapis.com \
    firestore.googleapis.com bigquery.googleapis.com monitoring.googleapis.com logging.googleapis.com \
    iam.googleapis.com serviceusage.googleapis.com cloudresourcemanager.googleapis.com \
    secretmanager.googleapis.com compute.googleapis.com

step "2. GKE Standard cluster $CLUSTER ($REGION)"
if ! "${G[@]}" container clusters describe "$CLUSTER" --region "$REGION" >/dev/null 2>&1; then
    # Config Connector as an add-on exists for Standard clusters only (not Autopilot).
    "${G[@]}" container clusters create "$CLUSTER" --region "$REGION" \
        --release-channel regular --num-nodes 1 --machine-type e2-standard-4 \
        --workload-pool "$PROJECT.svc.id.goog" \
        --addons ConfigConnector,HttpLoadBalancing \
        --enable-secret-manager \
        --enable-dataplane-v2 \
        --enable-managed-prometheus \
        --monitoring SYSTEM,POD,DEPLOYMENT,HPA
fi
"${G[@]}" container clusters get-credentials "$CLUSTER" --region "$REGION"

step "3. Config Connector (namespaced mode)"
"${G[@]}" iam service-accounts describe "$KCC_SA_EMAIL" >/dev/null 2>&1 \
    || "${G[@]}" iam service-accounts create "$KCC_SA" --display-name "Config Connector for CourseBridge"
# What helm/coursebridge-gcp declares: Pub/Sub, service accounts and IAM, Firestore, BigQuery, Secret
# Manager, monitoring, Cloud Armor.
for role in roles/pubsub.admin roles/iam.serviceAccountAdmin roles/resourcemanager.projectIamAdmin \
    roles/datastore.owner roles/bigquery.admin roles/secretmanager.admin roles/monitoring.editor \
    roles/serviceusage.serviceUsageAdmin roles/compute.securityAdmin roles/logging.configWriter; do
    "${G[@]}" projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$KCC_SA_EMAIL" \
        --role "$role" --condition None >/dev/null
done
"${G[@]}" iam service-accounts add-iam-policy-binding "$KCC_SA_EMAIL" --role roles/iam.workloadIdentityUser \
    --member "serviceAccount:$PROJECT.svc.id.goog[cnrm-system/cnrm-controller-manager-$NS]" >/dev/null
kubectl apply -f - <<EOF
apiVersion: core.cnrm.cloud.google.com/v1beta1
kind: ConfigConnector
metadata:
  name: configconnector.core.cnrm.cloud.google.com
spec:
  mode: namespaced
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
  annotations:
    cnrm.cloud.google.com/project-id: $PROJECT
---
apiVersion: core.cnrm.cloud.google.com/v1beta1
kind: ConfigConnectorContext
metadata:
  name: configconnectorcontext.core.cnrm.cloud.google.com
  namespace: $NS
spec:
  googleServiceAccount: $KCC_SA_EMAIL
  stateIntoSpec: Absent
EOF
kubectl -n "$NS" wait --for=condition=Ready --timeout=10m configconnectorcontext --all
kubectl -n cnrm-system get pods

step "4. Firestore databases (delete protection, PITR, daily backups kept 14 days)"
for db in ingest enrollment subscription; do
    if ! "${G[@]}" firestore databases describe --database "$db" >/dev/null 2>&1; then
        "${G[@]}" firestore databases create --database "$db" --location "$REGION" --type firestore-native \
            --delete-protection --enable-pitr
    fi
    if ! "${G[@]}" firestore backups schedules list --database "$db" --format 'value(name)' | grep -q .; then
        "${G[@]}" firestore backups schedules create --database "$db" --recurrence daily --retention 14d
    fi
done

step "5. Artifact Registry, static IP, Custom Metrics adapter"
"${G[@]}" artifacts repositories describe coursebridge --location "$REGION" >/dev/null 2>&1 \
    || "${G[@]}" artifacts repositories create coursebridge --repository-format docker --location "$REGION"
"${G[@]}" compute addresses describe "$STATIC_IP" --global >/dev/null 2>&1 \
    || "${G[@]}" compute addresses create "$STATIC_IP" --global
ADDRESS="$("${G[@]}" compute addresses describe "$STATIC_IP" --global --format 'value(address)')"
# The worker autoscalers read the Pub/Sub backlog through the Custom Metrics Stackdriver Adapter
# (Google's manifest, as in "Autoscale on Pub/Sub metrics"); its KSA reads Cloud Monitoring.
kubectl apply -f https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/master/custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml
"${G[@]}" projects add-iam-policy-binding "$PROJECT" --role roles/monitoring.viewer --condition None \
    --member "principal://iam.googleapis.com/projects/$("${G[@]}" projects describe "$PROJECT" --format 'value(projectNumber)')/locations/global/workloadIdentityPools/$PROJECT.svc.id.goog/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter" >/dev/null

step "done: what is left to you"
cat <<EOF
- DNS: an A record for $(value ingest.ingress.host) -> $ADDRESS (the certificate turns Active after it).
- Secret values (once; rotate by adding a version):
    printf %s "\$HOTMART_HOTTOK"    | gcloud --project $PROJECT secrets versions add coursebridge-hotmart-hottok --data-file=-
    openssl rand -hex 32 | tr -d '\n' | gcloud --project $PROJECT secrets versions add coursebridge-admin-token --data-file=-
    printf %s "\$TALENTLMS_API_KEY" | gcloud --project $PROJECT secrets versions add coursebridge-talentlms-api-key --data-file=-
    openssl rand -hex 32 | tr -d '\n' | gcloud --project $PROJECT secrets versions add coursebridge-analytics-pseudonym-key --data-file=-
    openssl rand -hex 32 | tr -d '\n' | gcloud --project $PROJECT secrets versions add coursebridge-console-secret-key --data-file=-
    openssl rand -hex 32 | tr -d '\n' | gcloud --project $PROJECT secrets versions add coursebridge-lookup-hash-key --data-file=-
  (the secrets themselves are created by the first skaffold run; add the versions after it)
- Deploy:  gcloud auth configure-docker $REGION-docker.pkg.dev
           skaffold run -p $ENV --default-repo=$REGION-docker.pkg.dev/$PROJECT/coursebridge
EOF
