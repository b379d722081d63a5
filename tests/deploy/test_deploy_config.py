"""The deployment configuration agrees with the code and with the official schemas.

- skaffold.yaml validates against Skaffold's published JSON schema (vendored: ``vendor/skaffold``);
- every dashboard and alert policy parses with the official Cloud Monitoring API types, so a typo fails;
- the Config Connector manifests (helm/coursebridge-gcp/files) declare exactly the topics and subscriptions of
  ``coursebridge.topology.TOPOLOGY`` with its settings, least-privilege IAM, and monitoring resources
  identical to the JSON files;
- the Helm chart, rendered for every profile, wires the same subscription names (worker HPAs), the same
  Workload Identity service accounts, and the security settings, and no values file holds a secret.

Rendering needs helm (``make test`` installs it into .tools/bin): without it those tests skip, except
with CI=true where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from google.cloud.monitoring_dashboard_v1.types import Dashboard
from google.cloud.monitoring_v3.types import AlertPolicy

from coursebridge.topology import TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "coursebridge"
PROFILES = ("local", "staging", "production")
SERVICES = ("ingest", "enrollment", "subscription", "analytics")
# Every image and Google identity: the services and the operator console (no topic, no database).
IMAGES = (*SERVICES, "console")
SKAFFOLD_SCHEMA = ROOT / "vendor" / "skaffold" / "v4beta13.json"
KUBE_VERSION = "1.33"
NAMESPACE = "coursebridge"
DASHBOARDS = sorted((ROOT / "monitoring" / "dashboards").glob("*.json"))
ALERTS = sorted((ROOT / "monitoring" / "alerts").glob("*.json"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def yaml_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@cache
def k8s_docs() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "helm" / "coursebridge-gcp" / "files").glob("*.yaml")):
        docs += yaml_docs(path.read_text("utf-8"))
    return tuple(docs)


def of_kind(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def owner(subscription: str) -> str:
    return subscription.split(".", 1)[0]


def worker_subscriptions() -> dict[str, set[str]]:
    """Service -> the subscriptions it consumes, per the topology."""
    found: dict[str, set[str]] = {}
    for sub in TOPOLOGY.subscriptions:
        found.setdefault(owner(sub.name), set()).add(sub.name)
    return found


# --- skaffold -----------------------------------------------------------------------------------------


def skaffold() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text("utf-8"))


def test_skaffold_yaml_validates_against_the_official_schema() -> None:
    schema = json.loads(SKAFFOLD_SCHEMA.read_text("utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    doc = skaffold()
    assert doc["apiVersion"] == "skaffold/v4beta13"
    errors = sorted(validator_class(schema).iter_errors(doc), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_skaffold_builds_each_image_and_deploys_every_profile_with_helm() -> None:
    doc = skaffold()
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in doc["build"]["artifacts"]}
    assert artifacts == {f"coursebridge-{s}": f"services/{s}/Dockerfile" for s in IMAGES}
    for dockerfile in artifacts.values():
        assert (ROOT / dockerfile).is_file()
    profiles = {p["name"]: p for p in doc["profiles"]}
    assert set(profiles) == set(PROFILES)
    for name, profile in profiles.items():
        releases = profile["deploy"]["helm"]["releases"]
        assert "kubectl" not in profile["deploy"], "one deployer: Helm (its order is the release order)"
        if name == "local":
            (release,) = releases
        else:  # the Google Cloud resources first, from the same single values file
            gcp, release = releases
            assert gcp["chartPath"] == "helm/coursebridge-gcp"
            assert gcp["valuesFiles"] == [f"helm/values-{name}.yaml"]
        assert release["chartPath"] == "helm/coursebridge"
        assert release["namespace"] == NAMESPACE
        assert release["valuesFiles"] == [f"helm/values-{name}.yaml"]
        assert (ROOT / release["valuesFiles"][0]).is_file()
        for service in IMAGES:
            key = service.replace("-", "_")
            templates = release["setValueTemplates"]
            assert templates[f"images.{service}.repository"] == f"{{{{.IMAGE_REPO_coursebridge_{key}}}}}"
            assert f"{{{{.IMAGE_TAG_coursebridge_{key}}}}}" in templates[f"images.{service}.tag"]
    assert "manifests" not in profiles["local"], "the chart itself runs the emulators before the services"


def test_dockerfiles_install_only_their_service_from_the_lock_file() -> None:
    for service in IMAGES:
        text = (ROOT / "services" / service / "Dockerfile").read_text("utf-8")
        assert "FROM ${PYTHON_IMAGE}" in text and "ARG PYTHON_IMAGE=python:3.11-slim" in text
        assert f"uv sync --frozen --no-dev --no-editable --package coursebridge-{service}" in text
        assert re.search(r"^USER 10001:10001$", text, re.M), "numeric non-root user"
        # Every workspace member's manifest, or uv cannot read the workspace.
        for member in sorted(ROOT.glob("services/*/pyproject.toml")) + sorted(
            ROOT.glob("libs/*/pyproject.toml")
        ):
            relative = member.relative_to(ROOT).as_posix()
            assert f"COPY {relative} " in text, f"{service}/Dockerfile does not copy {relative}"


# --- monitoring JSON ----------------------------------------------------------------------------------


def test_the_expected_dashboards_and_alerts_exist() -> None:
    assert {p.stem for p in DASHBOARDS} == {"intake", "saga", "lms", "analytics"}
    assert {p.stem for p in ALERTS} == {
        "ingest-availability-slo",
        "dead-letter-not-empty",
        "oldest-unacked-age",
        "outbox-not-draining",
        "lms-failure-rate",
        "hotmart-webhook-silence",
        "hotmart-reconciliation-recovered",
        "subscription-safety-net",
        "crash-looping",
        "autoscaler-at-max",
        "sweep-failing",
        "enrollment-failed",
        "webhook-quarantined",
        "webhook-silent",
        "webhook-url-down",
        "learning-timeline-gaps",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_parses_with_the_official_type(path: Path) -> None:
    dashboard = Dashboard.from_json(path.read_text("utf-8"))  # unknown fields and bad enums raise
    assert dashboard.display_name.startswith("CourseBridge")
    queries = [
        tile.widget.xy_chart.data_sets[i].time_series_query.prometheus_query
        for tile in dashboard.mosaic_layout.tiles
        for i in range(len(tile.widget.xy_chart.data_sets))
    ]
    assert queries and all(queries), "every chart queries with PromQL"


@pytest.mark.parametrize("path", ALERTS, ids=lambda p: p.stem)
def test_alert_policy_parses_with_the_official_type_and_has_a_runbook(path: Path) -> None:
    policy = AlertPolicy.from_json(path.read_text("utf-8"))
    assert policy.display_name.startswith("CourseBridge")
    assert policy.conditions
    for condition in policy.conditions:
        # PromQL, except the uptime check's built-in metric and the log-based sweep alert.
        assert (
            condition.condition_prometheus_query_language.query
            or "uptime_check" in condition.condition_threshold.filter
            or condition.condition_matched_log.filter
        ), condition.display_name
    assert policy.severity != AlertPolicy.Severity.SEVERITY_UNSPECIFIED
    anchors = re.findall(r"docs/runbooks\.md#([a-z0-9-]+)", policy.documentation.content)
    assert anchors, "the documentation links its runbook"
    assert set(anchors) <= runbook_anchors()


def test_the_slo_alert_has_fast_and_slow_burn_conditions() -> None:
    policy = AlertPolicy.from_json(
        (ROOT / "monitoring/alerts/ingest-availability-slo.json").read_text("utf-8")
    )
    names = [c.display_name.lower() for c in policy.conditions]
    assert any("fast burn" in n for n in names) and any("slow burn" in n for n in names)
    assert policy.combiner == AlertPolicy.ConditionCombinerType.OR


@cache
def runbook_anchors() -> set[str]:
    """GitHub's anchors for the headings of docs/runbooks.md."""
    anchors = set()
    for line in (ROOT / "docs" / "runbooks.md").read_text("utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


# --- k8s/: topology, IAM, monitoring ------------------------------------------------------------------


def test_every_topic_of_the_topology_is_a_pubsub_topic_and_no_other() -> None:
    names = [doc["metadata"]["name"] for doc in of_kind(k8s_docs(), "PubSubTopic")]
    assert sorted(names) == sorted(TOPOLOGY.all_topics())


def test_every_subscription_exists_with_the_topology_settings_plus_hold_subscriptions() -> None:
    subscriptions = {
        doc["metadata"]["name"]: doc["spec"] for doc in of_kind(k8s_docs(), "PubSubSubscription")
    }
    expected = {s.name for s in TOPOLOGY.subscriptions} | {
        s.hold_subscription for s in TOPOLOGY.subscriptions
    }
    assert set(subscriptions) == expected
    for sub in TOPOLOGY.subscriptions:
        spec = subscriptions[sub.name]
        assert spec["topicRef"] == {"name": sub.topic}
        assert spec["enableMessageOrdering"] is sub.ordered
        assert spec["ackDeadlineSeconds"] == sub.ack_deadline_seconds
        assert spec["deadLetterPolicy"] == {
            "deadLetterTopicRef": {"name": sub.dead_letter_topic},
            "maxDeliveryAttempts": sub.max_delivery_attempts,
        }
        assert spec["retryPolicy"] == {
            "minimumBackoff": f"{sub.min_backoff_seconds:g}s",
            "maximumBackoff": f"{sub.max_backoff_seconds:g}s",
        }
        assert spec["expirationPolicy"] == {"ttl": ""}, "never expires"
        hold = subscriptions[sub.hold_subscription]
        assert hold["topicRef"] == {"name": sub.dead_letter_topic}
        assert "deadLetterPolicy" not in hold


def bindings() -> list[dict[str, Any]]:
    return of_kind(k8s_docs(), "IAMPolicyMember")


def service_of(binding: dict[str, Any]) -> str | None:
    ref = binding["spec"].get("memberFrom", {}).get("serviceAccountRef")
    return ref["name"].removeprefix("coursebridge-") if ref else None


def test_each_service_publishes_only_its_own_topics_and_dead_letter_topics() -> None:
    published: dict[str, set[str]] = {service: set() for service in SERVICES}
    for binding in bindings():
        if binding["spec"]["role"] == "roles/pubsub.publisher" and service_of(binding):
            assert binding["spec"]["resourceRef"]["kind"] == "PubSubTopic"
            published[service_of(binding)].add(binding["spec"]["resourceRef"]["name"])
    own_dead_letters = {
        s: {x.dead_letter_topic for x in TOPOLOGY.subscriptions if owner(x.name) == s} for s in SERVICES
    }
    assert published == {
        "ingest": {"payments"},
        "enrollment": {"enrollments", "catalogue", "learning"} | own_dead_letters["enrollment"],
        "subscription": {"subscriptions"} | own_dead_letters["subscription"],
        "analytics": own_dead_letters["analytics"],
    }


def test_each_service_reads_only_its_own_subscriptions() -> None:
    roles = {"roles/pubsub.subscriber", "roles/pubsub.viewer"}
    for binding in bindings():
        spec = binding["spec"]
        if spec["role"] in roles and service_of(binding):
            assert spec["resourceRef"]["kind"] == "PubSubSubscription"
            assert owner(spec["resourceRef"]["name"]) == service_of(binding), binding["metadata"]["name"]
    subscribed = {
        (service_of(b), b["spec"]["resourceRef"]["name"])
        for b in bindings()
        if b["spec"]["role"] == "roles/pubsub.subscriber" and service_of(b)
    }
    keepers = {"enrollment", "subscription"}  # their workers keep dead letters (coursebridge.deadletters)
    assert subscribed == {(owner(sub.name), sub.name) for sub in TOPOLOGY.subscriptions} | {
        (owner(sub.name), sub.hold_subscription)
        for sub in TOPOLOGY.subscriptions
        if owner(sub.name) in keepers
    }


def test_bigquery_dataset_is_the_one_the_chart_configures() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))["analytics"]
    (dataset,) = of_kind(k8s_docs(), "BigQueryDataset")
    assert dataset["spec"]["resourceID"] == values["bigqueryDataset"]
    assert dataset["spec"]["location"] == "GCP_REGION", "the environment's region, explicitly"
    assert not {"defaultTableExpirationMs", "defaultPartitionExpirationMs"} & set(dataset["spec"]), (
        "revenue history never expires"
    )


def test_stateful_objects_survive_deleting_the_release_or_namespace() -> None:
    stateful = (
        "PubSubTopic",
        "IAMServiceAccount",
        "FirestoreDatabase",
        "BigQueryDataset",
        "SecretManagerSecret",
    )
    docs = [d for d in k8s_docs() if d["kind"] in stateful]
    docs += [d for d in of_kind(k8s_docs(), "PubSubSubscription") if d["metadata"]["name"].endswith(".hold")]
    assert len(docs) > 20
    for doc in docs:
        annotations = doc["metadata"].get("annotations", {})
        assert annotations.get("cnrm.cloud.google.com/deletion-policy") == "abandon", doc["metadata"]["name"]


def test_each_service_has_its_own_firestore_database_with_pitr() -> None:
    databases = {d["spec"]["resourceID"]: d["spec"] for d in of_kind(k8s_docs(), "FirestoreDatabase")}
    assert set(databases) == {"ingest", "enrollment", "subscription"}
    for spec in databases.values():
        assert spec["pointInTimeRecoveryEnablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"
        assert spec["locationID"] == "GCP_REGION"


def test_no_service_gets_a_role_outside_the_least_privilege_set() -> None:
    allowed = {
        "roles/pubsub.publisher",
        "roles/pubsub.subscriber",
        "roles/pubsub.viewer",
        "roles/datastore.user",
        "roles/iam.workloadIdentityUser",
        "roles/secretmanager.secretAccessor",
    }
    firestore = {}
    for binding in bindings():
        if binding["spec"]["role"] == "roles/datastore.user":
            firestore[service_of(binding)] = binding["spec"]["condition"]["expression"]
    assert firestore == {
        s: f'resource.name == "projects/PROJECT_ID/databases/{s}"'
        for s in ("ingest", "enrollment", "subscription")
    }, "each service its own database only; analytics none"
    for binding in bindings():
        role, service = binding["spec"]["role"], service_of(binding)
        if role == "roles/bigquery.jobUser":
            assert service == "analytics"
        elif service is not None:
            assert role in allowed, binding["metadata"]["name"]
    dataset = of_kind(k8s_docs(), "BigQueryDataset")[0]
    writers = [a for a in dataset["spec"]["access"] if a.get("userByEmail")]
    assert writers == [
        {"role": "WRITER", "userByEmail": "coursebridge-analytics@PROJECT_ID.iam.gserviceaccount.com"}
    ]


def test_pubsub_service_agent_can_dead_letter_every_subscription() -> None:
    agent = [b["spec"] for b in bindings() if "serviceIdentityRef" in b["spec"].get("memberFrom", {})]
    published = {a["resourceRef"]["name"] for a in agent if a["role"] == "roles/pubsub.publisher"}
    acked = {a["resourceRef"]["name"] for a in agent if a["role"] == "roles/pubsub.subscriber"}
    assert published == {s.dead_letter_topic for s in TOPOLOGY.subscriptions}
    assert acked == {s.name for s in TOPOLOGY.subscriptions}


def test_every_service_has_a_google_service_account_bound_to_its_kubernetes_one() -> None:
    accounts = {doc["metadata"]["name"] for doc in of_kind(k8s_docs(), "IAMServiceAccount")}
    assert accounts == {f"coursebridge-{s}" for s in IMAGES}
    members = {
        b["spec"]["resourceRef"]["name"]: b["spec"]["member"]
        for b in bindings()
        if b["spec"]["role"] == "roles/iam.workloadIdentityUser"
    }
    assert members == {
        f"coursebridge-{s}": f"serviceAccount:PROJECT_ID.svc.id.goog[{NAMESPACE}/coursebridge-{s}]"
        for s in IMAGES
    }


def load_generator():
    spec = importlib.util.spec_from_file_location("deploy_manifests", ROOT / "tools" / "deploy_manifests.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_manifests_are_up_to_date() -> None:
    for path, text in load_generator().outputs().items():
        assert path.read_text("utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: uv run python tools/deploy_manifests.py"
        )


def test_config_connector_monitoring_resources_are_the_json_files() -> None:
    kcc_only = set(load_generator().KCC_ONLY_FIELDS)
    for kind, files in (("MonitoringDashboard", DASHBOARDS), ("MonitoringAlertPolicy", ALERTS)):
        resources = {
            doc["metadata"]["annotations"]["coursebridge.io/source"]: doc for doc in of_kind(k8s_docs(), kind)
        }
        assert set(resources) == {p.relative_to(ROOT).as_posix() for p in files}
        for path in files:
            spec = {
                k: v
                for k, v in resources[path.relative_to(ROOT).as_posix()]["spec"].items()
                if k not in kcc_only
            }
            assert spec == json.loads(path.read_text("utf-8")), path.name


# --- Helm chart ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> str:
    candidates = [os.environ.get("HELM_BIN"), str(ROOT / ".tools" / "bin" / "helm"), shutil.which("helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    skip_or_fail("helm is not installed (bash tools/install_test_tools.sh installs it)")
    raise AssertionError("unreachable")


@cache
def _render(helm_bin: str, profile: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [helm_bin, "template", "coursebridge", str(CHART), "--kube-version", KUBE_VERSION,
         "--namespace", NAMESPACE, "-f", str(ROOT / "helm" / f"values-{profile}.yaml")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tuple(yaml_docs(result.stdout))


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, tuple[dict[str, Any], ...]]:
    return {profile: _render(helm, profile) for profile in PROFILES}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """CourseBridge's own processes (not the emulators a local cluster runs)."""
    return [
        doc
        for doc in docs
        if doc["kind"] in ("Deployment", "CronJob", "Job")
        and doc["metadata"]["name"].startswith("coursebridge-")
    ]


def test_values_name_the_topology_subscriptions_per_worker() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))
    configured = {s: set(values[s]["worker"]["subscriptions"]) for s in SERVICES if "worker" in values[s]}
    assert configured == worker_subscriptions()


@pytest.mark.parametrize("profile", ["staging", "production"])
def test_worker_autoscalers_watch_exactly_the_topology_subscriptions(rendered, profile: str) -> None:
    watched: dict[str, set[str]] = {}
    for hpa in of_kind(list(rendered[profile]), "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "External":
                external = metric["external"]["metric"]
                assert external["name"] == "pubsub.googleapis.com|subscription|num_undelivered_messages"
                watched.setdefault(target, set()).add(
                    external["selector"]["matchLabels"]["resource.labels.subscription_id"]
                )
    assert watched == {f"coursebridge-{s}-worker": subs for s, subs in worker_subscriptions().items()}
    cpu = [
        h
        for h in of_kind(list(rendered[profile]), "HorizontalPodAutoscaler")
        if h["spec"]["metrics"][0]["type"] == "Resource"
    ]
    assert [h["spec"]["scaleTargetRef"]["name"] for h in cpu] == ["coursebridge-ingest-api"]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_process_runs_locked_down_with_probes_and_resources(rendered, profile: str) -> None:
    docs = rendered[profile]
    for doc in workloads(docs):
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            if doc["kind"] == "Deployment":
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    names = {doc["metadata"]["name"] for doc in workloads(docs) if doc["kind"] == "Deployment"}
    assert names == {
        "coursebridge-ingest-api",
        "coursebridge-ingest-relay",
        *(f"coursebridge-{s}-{c}" for s in SERVICES[1:] for c in ("api", "worker")),
        "coursebridge-console-api",  # no worker: it owns no data and joins no topic
    }


# Each process's secrets, and no more (the TalentLMS key only where TalentLMS is called).
SECRETS_OF = {
    "coursebridge-ingest-api": {"HOTMART_HOTTOK", "ADMIN_TOKEN", "LOOKUP_HASH_KEY"},
    "coursebridge-ingest-relay": set(),
    "coursebridge-enrollment-api": {"ADMIN_TOKEN", "TALENTLMS_API_KEY"},  # one-click course links
    "coursebridge-enrollment-worker": {"TALENTLMS_API_KEY"},
    # Accesses carry the keyed hash of the buyer's e-mail; each process that writes or searches them.
    "coursebridge-subscription-api": {"ADMIN_TOKEN", "LOOKUP_HASH_KEY"},
    "coursebridge-subscription-worker": {"LOOKUP_HASH_KEY"},
    "coursebridge-subscription-sweep": {"LOOKUP_HASH_KEY"},
    "coursebridge-analytics-api": {"ANALYTICS_PSEUDONYM_KEY", "ADMIN_TOKEN"},
    "coursebridge-analytics-worker": {"ANALYTICS_PSEUDONYM_KEY"},
    # Calls the services' admin APIs with the token; signs its session cookies with its own key.
    "coursebridge-console-api": {"ADMIN_TOKEN", "CONSOLE_SECRET_KEY"},
}
SECRET_ENV = {
    "HOTMART_HOTTOK",
    "ADMIN_TOKEN",
    "TALENTLMS_API_KEY",
    "ANALYTICS_PSEUDONYM_KEY",
    "CONSOLE_SECRET_KEY",
    "LOOKUP_HASH_KEY",
}


def secret_names_of(container: dict[str, Any]) -> set[str]:
    names = {env["name"].removesuffix("_FILE") for env in container.get("env", [])}
    return names & SECRET_ENV


@pytest.mark.parametrize("profile", PROFILES)
def test_each_process_gets_only_the_secrets_it_reads(rendered, profile: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))
    refs = {ref["key"]: ref for ref in values["secrets"].values()}
    classes = {d["metadata"]["name"]: d for d in of_kind(list(rendered[profile]), "SecretProviderClass")}
    for doc in workloads(rendered[profile]):
        if doc["kind"] == "Job":
            continue
        name = doc["metadata"]["name"]
        spec = pod_spec(doc)
        (container,) = spec["containers"]
        assert secret_names_of(container) == SECRETS_OF[name], name
        for env in container.get("env", []):
            if env["name"] in SECRET_ENV:  # local clusters: Kubernetes Secrets
                assert profile == "local" and "value" not in env
                assert env["valueFrom"]["secretKeyRef"]["key"] in refs
            elif env["name"].removesuffix("_FILE") in SECRET_ENV:  # GKE: Secret Manager files
                assert profile != "local"
                key = env["value"].rsplit("/", 1)[1]
                (volume,) = [v for v in spec["volumes"] if v["name"] == "secrets"]
                assert volume["csi"]["driver"] == "secrets-store-gke.csi.k8s.io"
                spc = classes[volume["csi"]["volumeAttributes"]["secretProviderClass"]]
                mounted = yaml.safe_load(spc["spec"]["parameters"]["secrets"])
                assert {"resourceName": f"projects/{values_of(profile)['gcp']['projectId']}/secrets/"
                        f"{refs[key]['secret']}/versions/latest", "path": key} in mounted  # fmt: skip
        if profile != "local" and not SECRETS_OF[name]:
            assert all(v["name"] != "secrets" for v in spec["volumes"]), name


def values_of(profile: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "helm" / f"values-{profile}.yaml").read_text("utf-8"))


def test_secret_manager_secrets_and_accessors_match_the_chart() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))
    declared = {d["metadata"]["name"] for d in of_kind(k8s_docs(), "SecretManagerSecret")}
    assert declared == {ref["secret"] for ref in values["secrets"].values()}
    readers = {
        (service_of(b), b["spec"]["resourceRef"]["name"])
        for b in bindings()
        if b["spec"]["role"] == "roles/secretmanager.secretAccessor"
    }
    env_to_ref = {
        "HOTMART_HOTTOK": "hotmartHottok",
        "ADMIN_TOKEN": "adminToken",
        "TALENTLMS_API_KEY": "talentlmsApiKey",
        "ANALYTICS_PSEUDONYM_KEY": "analyticsPseudonymKey",
        "CONSOLE_SECRET_KEY": "consoleSecretKey",
        "LOOKUP_HASH_KEY": "lookupHashKey",
    }
    expected = {
        (process.split("-")[1], values["secrets"][env_to_ref[env]]["secret"])
        for process, envs in SECRETS_OF.items()
        for env in envs
    }
    # Ingest's Hotmart reconciliation CronJob (off until the API credentials exist) reads these three.
    expected |= {
        ("ingest", values["secrets"][ref]["secret"])
        for ref in ("hotmartClientId", "hotmartClientSecret", "hotmartBasic")
    }
    assert readers == expected


def test_the_relay_is_a_single_pod_replaced_by_recreate(rendered) -> None:
    for docs in rendered.values():
        (relay,) = [
            d
            for d in of_kind(list(docs), "Deployment")
            if d["metadata"]["name"] == "coursebridge-ingest-relay"
        ]
        assert relay["spec"]["replicas"] == 1
        assert relay["spec"]["strategy"] == {"type": "Recreate"}
        assert pod_spec(relay)["containers"][0]["command"] == ["python", "-m", "ingest.entrypoints.relay"]
        targets = {
            h["spec"]["scaleTargetRef"]["name"] for h in of_kind(list(docs), "HorizontalPodAutoscaler")
        }
        assert "coursebridge-ingest-relay" not in targets


def test_service_accounts_use_the_google_service_accounts_of_k8s(rendered) -> None:
    project = yaml.safe_load((ROOT / "helm" / "values-staging.yaml").read_text("utf-8"))["gcp"]["projectId"]
    accounts = {doc["metadata"]["name"]: doc for doc in of_kind(list(rendered["staging"]), "ServiceAccount")}
    assert set(accounts) == {f"coursebridge-{s}" for s in IMAGES}
    for name, account in accounts.items():
        assert (
            account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
            == f"{name}@{project}.iam.gserviceaccount.com"
        )
    for doc in workloads(rendered["staging"]):
        assert pod_spec(doc)["serviceAccountName"] in accounts


def test_only_ingest_is_public_behind_a_gke_ingress(rendered) -> None:
    docs = list(rendered["production"])
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "gce"
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/webhooks/hotmart", "Exact", "coursebridge-ingest"),
        ("/healthz", "Exact", "coursebridge-ingest"),  # liveness, no data: the uptime check's probe
    ]
    (backend,) = of_kind(docs, "BackendConfig")
    assert backend["apiVersion"] == "cloud.google.com/v1"
    assert backend["spec"]["healthCheck"]["requestPath"] == "/healthz"
    (certificate,) = of_kind(docs, "ManagedCertificate")
    assert certificate["apiVersion"] == "networking.gke.io/v1"
    assert certificate["spec"]["domains"] == [ingress["spec"]["rules"][0]["host"]]
    assert not of_kind(list(rendered["local"]), "Ingress")


def render_with(helm_bin: str, profile: str, values: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_bin, "template", "coursebridge", str(CHART), "--kube-version", KUBE_VERSION,
         "--namespace", NAMESPACE, "-f", str(ROOT / "helm" / f"values-{profile}.yaml"), "-f", str(values)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def console_env(docs: list[dict[str, Any]]) -> dict[str, str | None]:
    (deployment,) = [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "coursebridge-console-api"
    ]
    (container,) = pod_spec(deployment)["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8084, "protocol": "TCP"}]
    return {env["name"]: env.get("value") for env in container["env"]}


def test_the_console_calls_the_four_apis_in_the_cluster_and_they_let_it_in(rendered) -> None:
    docs = list(rendered["production"])
    env = console_env(docs)
    services = {d["metadata"]["name"]: d for d in of_kind(docs, "Service")}
    for service in SERVICES:
        url = env[f"{service.upper()}_URL"]
        name, port = url.removeprefix("http://").split(":")
        assert services[name]["spec"]["ports"][0]["port"] == int(port), url
    assert "CONSOLE_AUTH" not in env, "without IAP operators sign in with the token (port-forward)"
    assert "annotations" not in services["coursebridge-console"]["metadata"], "not behind the load balancer"
    policies = {d["metadata"]["name"]: d["spec"] for d in of_kind(docs, "NetworkPolicy")}
    console_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "coursebridge-console"}}}
    for service in SERVICES:
        admitted = [
            rule for rule in policies[f"coursebridge-{service}"]["ingress"] if console_pods in rule["from"]
        ]
        assert admitted == [{"from": [console_pods], "ports": [{"port": "http"}]}], service
    egress = policies["coursebridge-console"]["egress"]
    assert {
        "to": [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/component": "api", "app.kubernetes.io/part-of": "coursebridge"}}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    } in egress  # fmt: skip
    assert all(
        "ipBlock" not in peer for rule in policies["coursebridge-console"]["ingress"] for peer in rule["from"]
    )


def test_with_iap_the_console_is_routed_on_the_operator_host_and_trusts_only_iap(
    helm: str, tmp_path: Path
) -> None:
    values = tmp_path / "iap.yaml"
    values.write_text(
        "console:\n  iap:\n    enabled: true\n    audience: /projects/123/global/backendServices/456\n"
        "  ingress:\n    host: console.example.org\n"
    )
    result = render_with(helm, "production", values)
    assert result.returncode == 0, result.stderr
    docs = yaml_docs(result.stdout)
    env = console_env(docs)
    assert (env["CONSOLE_AUTH"], env["IAP_AUDIENCE"]) == ("iap", "/projects/123/global/backendServices/456")
    (service,) = [d for d in of_kind(docs, "Service") if d["metadata"]["name"] == "coursebridge-console"]
    assert service["metadata"]["annotations"]["cloud.google.com/backend-config"] == (
        '{"default": "coursebridge-console"}'
    )
    backends = {d["metadata"]["name"]: d["spec"] for d in of_kind(docs, "BackendConfig")}
    assert backends["coursebridge-console"]["iap"]["enabled"] is True
    assert backends["coursebridge-console"]["healthCheck"]["port"] == 8084
    (ingress,) = of_kind(docs, "Ingress")
    rules = {rule["host"]: rule["http"]["paths"] for rule in ingress["spec"]["rules"]}
    assert [(p["path"], p["backend"]["service"]["name"]) for p in rules["console.example.org"]] == [
        ("/", "coursebridge-console")
    ]
    assert {
        p["backend"]["service"]["name"] for p in rules[values_of("production")["ingest"]["ingress"]["host"]]
    } == {"coursebridge-ingest"}
    certificates = {d["metadata"]["name"]: d["spec"]["domains"] for d in of_kind(docs, "ManagedCertificate")}
    assert certificates["coursebridge-console"] == ["console.example.org"]
    assert ingress["metadata"]["annotations"]["networking.gke.io/managed-certificates"] == (
        "coursebridge-ingest,coursebridge-console"
    )
    missing = tmp_path / "no-audience.yaml"
    missing.write_text("console:\n  iap:\n    enabled: true\n  ingress:\n    host: console.example.org\n")
    result = render_with(helm, "production", missing)
    assert result.returncode != 0 and "console.iap.audience is required" in result.stderr


def test_the_sweep_runs_every_five_minutes_one_at_a_time(rendered) -> None:
    (cronjob,) = of_kind(list(rendered["production"]), "CronJob")
    assert cronjob["spec"]["schedule"] == "*/5 * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cronjob)["containers"][0]["command"] == ["python", "-m", "subscription.entrypoints.sweep"]


# --- no secret values ---------------------------------------------------------------------------------

SECRET_WORDS = re.compile(r"(token|secret|password|passwd|hottok|api[-_]?key|pseudonym|credential)", re.I)


def walk(node: Any, path: tuple[str, ...] = ()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, str(index)))
    else:
        yield path, node


@pytest.mark.parametrize(
    "path",
    [CHART / "values.yaml", *(ROOT / "helm" / f"values-{p}.yaml" for p in PROFILES)],
    ids=lambda p: p.name,
)
def test_values_files_hold_no_secret_values(path: Path) -> None:
    values = yaml.safe_load(path.read_text("utf-8")) or {}
    for keys, value in walk(values):
        if keys[:1] == ("secrets",):
            assert len(keys) == 3 and keys[2] in ("name", "key", "secret"), (
                f"secrets.* only name Secrets: {'.'.join(keys)}"
            )
            continue
        if isinstance(value, str) and value and any(SECRET_WORDS.search(k) for k in keys):
            pytest.fail(
                f"{path.name}: {'.'.join(keys)} looks like a secret value; reference a Secret instead"
            )


# --- PromQL and the metrics it names --------------------------------------------------------------------

# Metrics Google Cloud exports itself (they exist before any traffic): Pub/Sub, load balancer, Kubernetes
# system metrics and the cluster's kube state metrics (HPA package, tools/gcp_bootstrap.sh).
BUILT_IN = re.compile(r"^([a-z]+_googleapis_com:|kubernetes_io:|kube_)")


def promql_queries() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for tile in Dashboard.from_json(path.read_text("utf-8")).mosaic_layout.tiles:
            for data_set in tile.widget.xy_chart.data_sets:
                found.append((path.name, data_set.time_series_query.prometheus_query))
    for path in ALERTS:
        for condition in AlertPolicy.from_json(path.read_text("utf-8")).conditions:
            if condition.condition_prometheus_query_language.query:
                found.append((path.name, condition.condition_prometheus_query_language.query))
    return found


def metric_names(query: str) -> set[str]:
    import promql_parser

    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        for attribute in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attribute, None)
            if child is not None and not isinstance(child, (str, int, float)):
                visit(child)
        for child in getattr(node, "args", None) or []:
            visit(child)

    visit(promql_parser.parse(query))
    return names


def test_every_promql_query_parses_and_names_a_metric() -> None:
    queries = promql_queries()
    assert len(queries) > 30
    for source, query in queries:
        assert metric_names(query), f"{source}: {query}"


def exported_metrics() -> set[str]:
    """Names given to prometheus_client metrics in the services' and libraries' code (not tests), also by
    custom collectors (``CounterMetricFamily`` / ``GaugeMetricFamily``)."""
    pattern = re.compile(
        r"\b(Counter|Gauge|Histogram|Summary|CounterMetricFamily|GaugeMetricFamily)\(\s*\"([a-z_:]+)\"", re.S
    )
    names: set[str] = set()
    for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        for kind, name in pattern.findall(path.read_text("utf-8")):
            names.add(name)
            if kind in ("Counter", "CounterMetricFamily") and not name.endswith("_total"):
                names.add(f"{name}_total")
            if kind in ("Histogram", "Summary"):
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return names


def test_every_metric_a_dashboard_or_alert_uses_is_exported_by_the_code() -> None:
    exported = exported_metrics()
    assert "coursebridge_outbox_oldest_age_seconds" in exported and "coursebridge_lms_calls_total" in exported
    missing = {
        (source, name)
        for source, query in promql_queries()
        for name in metric_names(query)
        if not BUILT_IN.match(name) and name not in exported
    }
    assert not missing, f"used but never exported: {sorted(missing)}"


def render_gcp(helm_bin: str, *values: str) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the Google Cloud chart with the production values (plus ``values`` files)."""
    extra = [arg for path in values for arg in ("-f", path)]
    return subprocess.run(
        [helm_bin, "template", "coursebridge-gcp", str(ROOT / "helm" / "coursebridge-gcp"),
         "-f", str(ROOT / "helm" / "values-production.yaml"), *extra],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@cache
def gcp_docs(helm_bin: str) -> list[dict[str, Any]]:
    result = render_gcp(helm_bin)
    assert result.returncode == 0, result.stderr
    return yaml_docs(result.stdout)


def test_every_alert_pages_the_notification_channels_of_the_values(helm: str) -> None:
    """The Google Cloud chart wires every alert policy to the environment's channels."""
    docs = gcp_docs(helm)
    channels = {d["metadata"]["name"] for d in of_kind(docs, "MonitoringNotificationChannel")}
    assert channels
    policies = of_kind(docs, "MonitoringAlertPolicy")
    assert len(policies) == len(ALERTS)
    for policy in policies:
        assert {ref["name"] for ref in policy["spec"]["notificationChannels"]} == channels
    (uptime,) = of_kind(docs, "MonitoringUptimeCheckConfig")
    assert uptime["spec"]["resourceID"] in (ROOT / "monitoring/alerts/webhook-url-down.json").read_text(
        "utf-8"
    )
    host = yaml.safe_load((ROOT / "helm/values-production.yaml").read_text("utf-8"))["ingest"]["ingress"][
        "host"
    ]
    assert uptime["spec"]["monitoredResource"]["filterLabels"]["host"] == host


def test_the_uptime_check_probes_a_path_the_ingress_routes_and_cloud_armor_lets_through(
    helm: str, rendered
) -> None:
    """The probe takes the webhook's way in and expects 2xx (Config Connector 1.127 accepts nothing else)."""
    docs = gcp_docs(helm)
    (uptime,) = of_kind(docs, "MonitoringUptimeCheckConfig")
    check = uptime["spec"]["httpCheck"]
    assert (check["requestMethod"], check["port"], check["useSsl"], check["validateSsl"]) == (
        "GET",
        443,
        True,
        True,
    )
    (ingress,) = of_kind(list(rendered["production"]), "Ingress")
    routed = {
        p["path"]: p["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert routed.get(check["path"]) == "coursebridge-ingest"
    (policy,) = of_kind(docs, "ComputeSecurityPolicy")
    allowed = {
        rule["match"]["expr"]["expression"]
        for rule in policy["spec"]["rule"]
        if rule["action"] == "rate_based_ban" and rule["rateLimitOptions"]["conformAction"] == "allow"
    }
    assert f"request.method == 'GET' && request.path == '{check['path']}'" in allowed
    assert "request.method == 'POST' && request.path == '/webhooks/hotmart'" in allowed
    (deny_rest,) = [rule for rule in policy["spec"]["rule"] if rule["priority"] == 2147483647]
    assert deny_rest["action"].startswith("deny")


def test_a_notification_channel_display_name_is_refused_with_a_clear_error(helm: str, tmp_path: Path) -> None:
    """Config Connector names a channel from metadata.name; a displayName would be silently dropped."""
    values = tmp_path / "channel.yaml"
    values.write_text(
        "alerting:\n  notificationChannels:\n"
        "    - {name: oncall-email, type: email, displayName: On-call, labels: {email_address: a@b.c}}\n"
    )
    result = render_gcp(helm, str(values))
    assert result.returncode != 0
    assert "notificationChannels[oncall-email].displayName" in result.stderr
    assert "remove displayName" in result.stderr
