"""Strict JSON schemas for Config Connector objects, from the CRDs vendored under vendor/config-connector.

Used by tests/deploy/test_validate_manifests.py (a module beside the other shared test helpers).

Config Connector's minimum supported release (``CONFIG_CONNECTOR_VERSION``) is the contract: what the chart
renders must be accepted by that release's API server, with ``kubectl apply --validate=strict`` (an unknown
field is an error, not silently pruned). The API server checks a custom resource against its CRD's
``openAPIV3Schema``; this module turns that schema into a JSON schema the same checks fall out of:

- every object schema gets ``additionalProperties: false`` unless the CRD gives it ``additionalProperties``
  (a map) or ``x-kubernetes-preserve-unknown-fields: true`` (the API server's own rule: what a structural
  schema does not name is unknown);
- ``nullable: true`` admits ``null``; ``x-kubernetes-int-or-string`` admits an integer or a string;
- the root ``metadata`` is Kubernetes' ObjectMeta (strict, from the kubernetes-validate wheel), as the
  API server validates it for every kind;
- OpenAPI 3.0's keywords are JSON Schema draft 4's (boolean ``exclusiveMinimum``), hence Draft4Validator.

What this cannot check is said, not skipped: a CEL rule (``x-kubernetes-validations``) is evaluated by the
API server; the only ones allowed here are transition rules (``oldSelf``), which never apply when an object
is created; any other rule in a vendored CRD raises ``UncheckedRule`` so a CRD update cannot quietly
weaken the check. ``format`` (int32, int64, double) is not enforced, as the API server does not for those.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
CONFIG_CONNECTOR_VERSION = "v1.127.0"
VENDORED = ROOT / "vendor" / "config-connector" / CONFIG_CONNECTOR_VERSION
# The resource CRDs and the operator's (ConfigConnector, ConfigConnectorContext), as laid out upstream.
CRD_DIRS = (VENDORED / "config" / "crds" / "resources", VENDORED / "operator" / "config" / "crd" / "bases")
# The operator's kustomization patches its ConfigConnector CRD (mode vs. credentials) before release.
CRD_PATCHES = {"configconnectors.core.cnrm.cloud.google.com": VENDORED / "operator/config/crd/crd_patch.yaml"}
CONFIG_CONNECTOR_GROUP = "cnrm.cloud.google.com"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class UncheckedRule(Exception):
    """A vendored CRD holds a validation this module cannot evaluate."""


@dataclass(frozen=True)
class Invalid:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


def is_config_connector(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return group == CONFIG_CONNECTOR_GROUP or group.endswith("." + CONFIG_CONNECTOR_GROUP)


def apply_patch(document: dict[str, Any], operations: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``add`` operations of a JSON patch (RFC 6902), the only kind the operator's CRD patch uses."""
    patched = copy.deepcopy(document)
    for operation in operations:
        if operation["op"] != "add":
            raise UncheckedRule(f"JSON patch op {operation['op']!r} is not supported here")
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if not isinstance(node, dict) or last in node:
            raise UncheckedRule(f"JSON patch path {operation['path']} does not add a new key")
        node[last] = copy.deepcopy(operation["value"])
    return patched


def to_json_schema(schema: dict[str, Any], where: str = "", structural: bool = True) -> dict[str, Any]:
    """One CRD ``openAPIV3Schema`` node as a strict draft-4 JSON schema (recursively).

    Below ``allOf``/``anyOf``/``oneOf``/``not`` a schema only constrains the values the structural schema
    names (``structural=False``): the fields it lists there are not the only ones allowed.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {
                name: to_json_schema(sub, f"{where}.{name}", structural) for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value, f"{where}[]" if key == "items" else where, structural)
        elif key == "not":
            out[key] = to_json_schema(value, where, structural=False)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub, where, structural=False) for sub in value]
        elif key == "x-kubernetes-validations":
            for rule in value:
                if "oldSelf" not in rule["rule"]:
                    raise UncheckedRule(f"{where}: CEL rule {rule['rule']!r} is not evaluated here")
        elif key in ("description", "nullable", "format") or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    is_object = schema.get("type") == "object" or "properties" in schema
    if (
        structural
        and is_object
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@dataclass(frozen=True)
class Crd:
    name: str
    group: str
    kind: str
    path: Path
    schemas: dict[str, dict[str, Any]]  # served version -> strict JSON schema of the whole object

    def api_versions(self) -> list[str]:
        return [f"{self.group}/{version}" for version in self.schemas]


def crd_from_file(path: Path) -> Crd:
    docs = [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]
    if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: expected one CustomResourceDefinition")
    crd = docs[0]
    name = crd["metadata"]["name"]
    if name in CRD_PATCHES:
        crd = apply_patch(crd, yaml.safe_load(CRD_PATCHES[name].read_text("utf-8")))
    schemas = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = to_json_schema(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = {"$ref": f"{definitions()['$id']}#/$defs/{OBJECT_META}"}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        schemas[version["name"]] = schema
    return Crd(name, crd["spec"]["group"], crd["spec"]["names"]["kind"], path, schemas)


@cache
def definitions() -> dict[str, Any]:
    """Kubernetes' own definitions (ObjectMeta, strict) from the kubernetes-validate wheel."""
    import kubernetes_validate

    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.33.0-local-strict"
    return json.loads((folder / "_definitions.json").read_text("utf-8"))


@cache
def vendored_crds() -> dict[tuple[str, str], Crd]:
    """(apiVersion, kind) -> its CRD, for every served version of every vendored CRD."""
    crds: dict[tuple[str, str], Crd] = {}
    for folder in CRD_DIRS:
        for path in sorted(folder.glob("*.yaml")):
            crd = crd_from_file(path)
            for api_version in crd.api_versions():
                crds[(api_version, crd.kind)] = crd
    return crds


@cache
def validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    crd = vendored_crds()[(api_version, kind)]
    registry: Registry = Registry().with_resource(definitions()["$id"], Resource.from_contents(definitions()))
    schema = crd.schemas[api_version.rpartition("/")[2]]
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, registry=registry)


def errors(doc: dict[str, Any]) -> Iterator[Invalid]:
    """Why the API server of the vendored release would reject ``doc`` (nothing when it would accept it).

    Raises KeyError when no vendored CRD serves the document's apiVersion and kind.
    """
    for error in validator(doc["apiVersion"], doc["kind"]).iter_errors(doc):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        yield Invalid(path, error.message)
