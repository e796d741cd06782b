"""Validate custom resources (RayCluster, RayJob) against their CRD's schema, strictly.

The API server accepts a custom resource when it matches the CRD's
``openAPIV3Schema``, but it prunes unknown fields silently: a RayJob with
``shutdownAfterJobFinish: true`` (one letter short) is accepted, and its
cluster is never shut down. So the schema is closed before validating: every
object schema that lists ``properties`` and neither ``additionalProperties``
nor ``x-kubernetes-preserve-unknown-fields`` rejects other keys. The
Kubernetes extensions JSON Schema does not know are translated
(``x-kubernetes-int-or-string``, ``nullable``, the implicit ``apiVersion`` /
``kind`` / ``metadata`` of ``x-kubernetes-embedded-resource``); CEL rules
(``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import yaml

from medray.deploy.k8s_problem import Problem, json_path, object_label
from medray.errors import MedrayError

_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONE = ("not", "additionalItems")


class CRDError(MedrayError):
    """The CRD files are missing or do not define the kind/version asked for."""


def strict_schema(schema: dict) -> dict:
    """A copy of an OpenAPI v3 (structural) schema that JSON Schema validates the way the API server
    would, except that unknown fields are errors instead of being pruned."""
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: strict_schema(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [strict_schema(sub) for sub in out[key]]
    for key in (*_SCHEMA_ONE, "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict_schema(out[key])
    items = out.get("items")
    if isinstance(items, dict):
        out["items"] = strict_schema(items)
    elif isinstance(items, list):
        out["items"] = [strict_schema(sub) for sub in items]

    if out.get("x-kubernetes-int-or-string") and not any(k in out for k in _SCHEMA_LISTS):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-embedded-resource"):
        props = dict(out.get("properties") or {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
        out["properties"] = props
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=8)
def _crd_index(crd_path: str) -> dict[tuple[str, str, str], dict]:
    """(group, kind, version) -> openAPIV3Schema of every CRD in a file or in a folder's *.yaml / *.yml."""
    path = Path(crd_path)
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    elif path.is_file():
        files = [path]
    else:
        raise CRDError(f"CRD path {path} does not exist")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the RayJob CRD is 1.4 MB of YAML
    index: dict[tuple[str, str, str], dict] = {}
    for file in files:
        try:
            docs = list(yaml.load_all(file.read_text(), Loader=loader))
        except yaml.YAMLError as exc:
            raise CRDError(f"{file}: cannot parse YAML: {exc}") from None
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc.get("spec", {})
            for version in spec.get("versions", []):
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema:
                    index[(spec["group"], spec["names"]["kind"], version["name"])] = schema
    if not index:
        raise CRDError(f"no CustomResourceDefinition with a schema in {path}")
    return index


@functools.lru_cache(maxsize=16)
def load_crd_schema(crd_path: str | Path, kind: str, api_version: str) -> dict:
    """The strict schema of ``kind`` at ``api_version`` ("ray.io/v1") from a CRD file or a folder of them.

    Raises ``CRDError`` when the files are missing or define no such kind/version.
    """
    group, _, version = api_version.rpartition("/")
    index = _crd_index(str(Path(crd_path).resolve()))
    schema = index.get((group, kind, version))
    if schema is None:
        known = ", ".join(sorted(f"{k} {g}/{v}" for g, k, v in index))
        raise CRDError(f"no CRD for {kind} {api_version} in {crd_path} (it has: {known})")
    return strict_schema(schema)


def validate_custom_resource(manifest: dict, crd_path: str | Path, source: str = "<manifest>") -> list[Problem]:
    """Every way ``manifest`` breaks its CRD's strict schema, as problems naming ``source``, the object
    and the JSON path; empty when it is valid. Raises ``CRDError`` when its kind has no CRD there."""
    schema = load_crd_schema(crd_path, str(manifest.get("kind")), str(manifest.get("apiVersion")))
    validator = jsonschema.Draft4Validator(schema)
    label = object_label(manifest)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    return [Problem(source, label, json_path(e.absolute_path), e.message) for e in errors]
