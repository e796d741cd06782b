"""Validate medray's Kubernetes manifests: a kustomize directory or a YAML file, every object, all problems.

RayCluster and RayJob are checked against the KubeRay CRD schemas (closed, so a
misspelt field fails: ``medray.deploy.crd``); every other object against the
Kubernetes schemas of a pinned version with ``kubernetes_validate`` in strict
mode; then medray's own rules (``medray.deploy.k8s_checks``). The CRD folder is
an argument: the copy beside this checkout is test data, a user validates
against the CRDs of the KubeRay they run.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate

from medray.deploy import k8s_checks
from medray.deploy.crd import CRDError, validate_custom_resource
from medray.deploy.k8s_problem import Problem, json_path, object_label
from medray.deploy.k8s_render import render_kustomization, split_documents
from medray.job_catalog import REPO_ROOT

# Kubernetes version core objects are validated against (EKS, GKE and AKS all run it).
KUBERNETES_VERSION = "1.33"
CUSTOM_GROUPS = ("ray.io",)


def validate_object(
    obj: dict,
    source: str,
    crd_dir: str | Path,
    repo_root: str | Path = REPO_ROOT,
    kubernetes_version: str = KUBERNETES_VERSION,
) -> list[Problem]:
    """Schema problems of one object, then medray's rules for it (secrets, Ray pods, RayJob entrypoints)."""
    problems = _schema_problems(obj, source, Path(crd_dir), kubernetes_version)
    problems += k8s_checks.check_inline_secrets(obj, source)
    problems += k8s_checks.check_ray_cluster(obj, source)
    problems += k8s_checks.check_rayjob(obj, source, Path(repo_root))
    return problems


def validate_objects(
    objects: list[dict],
    source: str,
    crd_dir: str | Path,
    repo_root: str | Path = REPO_ROOT,
    kubernetes_version: str = KUBERNETES_VERSION,
    require_all_jobs: bool = False,
) -> list[Problem]:
    """Every problem of a set of objects rendered together; with ``require_all_jobs`` every catalog
    job must also have exactly one RayJob."""
    problems = []
    for obj in objects:
        problems += validate_object(obj, source, crd_dir, repo_root, kubernetes_version)
    problems += k8s_checks.check_cluster_specs_match(objects, source)
    if require_all_jobs:
        problems += k8s_checks.check_catalog_coverage(objects, source)
    return problems


def validate_kustomization(
    directory: str | Path,
    crd_dir: str | Path,
    repo_root: str | Path = REPO_ROOT,
    kubernetes_version: str = KUBERNETES_VERSION,
    require_all_jobs: bool = True,
) -> list[Problem]:
    """Render ``directory`` as ``kubectl apply -k`` would and return every problem of the result.

    Raises ``KustomizeError`` when no kustomize is on PATH or the build fails, ``CRDError`` when
    ``crd_dir`` holds no CRDs.
    """
    source = str(directory)
    objects = split_documents(render_kustomization(directory), source)
    return validate_objects(objects, source, crd_dir, repo_root, kubernetes_version, require_all_jobs)


def validate_manifest_file(
    path: str | Path,
    crd_dir: str | Path,
    repo_root: str | Path = REPO_ROOT,
    kubernetes_version: str = KUBERNETES_VERSION,
) -> list[Problem]:
    """Every problem of the objects in one (multi-document) YAML file, as written (no kustomize)."""
    path = Path(path)
    return validate_objects(split_documents(path.read_text(), str(path)), str(path), crd_dir, repo_root,
                            kubernetes_version)


def render_objects(directory: str | Path) -> list[dict]:
    """The objects ``kubectl apply -k directory`` would apply."""
    return split_documents(render_kustomization(directory), str(directory))


def _schema_problems(obj: dict, source: str, crd_dir: Path, kubernetes_version: str) -> list[Problem]:
    label = object_label(obj)
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str):
            return [Problem(source, label, json_path((key,)), "missing")]
    if obj["apiVersion"].partition("/")[0] in CUSTOM_GROUPS:
        try:
            return validate_custom_resource(obj, crd_dir, source)
        except CRDError as exc:
            if not crd_dir.exists():
                raise
            return [Problem(source, label, "$", str(exc))]
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [Problem(source, label, json_path(exc.path), f"{exc.message} (Kubernetes {exc.version})")]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [Problem(source, label, "$", exc.message)]
    return []
