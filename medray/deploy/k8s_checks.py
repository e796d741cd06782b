"""medray's own rules for its Kubernetes manifests, beyond what any schema can say.

Each check takes one object (or the whole set) and returns problems; none stops
at the first. They catch what a schema accepts but a cluster run would pay for:
a RayJob whose job file or config is wrong (found an hour later, after the
nodes came up), a credential written into a manifest, a Ray pod without a
memory-backed ``/dev/shm`` (the object store falls back to disk), a cluster
without token authentication, RayJobs whose cluster lost an overlay's sizes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from medray.deploy.k8s_problem import Problem, json_path, object_label
from medray.deploy.secret_names import is_secret_name
from medray.errors import MedrayError
from medray.job_catalog import JOBS, parse_entrypoint

RAY_KINDS = ("RayCluster", "RayJob")
# Ray's default object store: 30% of the pod's memory, at most 200 GB (ray_constants
# DEFAULT_OBJECT_STORE_MEMORY_PROPORTION / DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES).
OBJECT_STORE_SHARE = 0.3
OBJECT_STORE_MAX_BYTES = 200 * 10**9
_QUANTITY = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$")
_UNITS = {None: 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity_bytes(quantity: str | int | float) -> float:
    """A Kubernetes quantity ("64Gi", "500M", 1024) in bytes (or cores); ``ValueError`` when malformed."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _walk(node, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def check_inline_secrets(obj: dict, source: str) -> list[Problem]:
    """Credentials written into the manifest: an ``env`` entry with a secret-like name and a literal
    ``value``, the same in a RayJob's ``runtimeEnvYAML``, a ConfigMap key, or a Secret with data."""
    label, problems = object_label(obj), []
    if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
        problems.append(Problem(source, label, "$", "a Secret with data is committed to the manifests; "
                                "create it with `kubectl create secret generic` instead"))
    if obj.get("kind") == "ConfigMap":
        for key in obj.get("data") or {}:
            if is_secret_name(key):
                problems.append(Problem(source, label, json_path(("data", key)),
                                        f"{key} is a credential; ConfigMaps are not secret"))
    for path, node in _walk(obj):
        if path and path[-1] == "env" and isinstance(node, list):
            for i, var in enumerate(node):
                if isinstance(var, dict) and is_secret_name(str(var.get("name", ""))) and "value" in var:
                    problems.append(Problem(source, label, json_path((*path, i, "value")),
                                            f"{var['name']} has an inline value; use valueFrom.secretKeyRef"))
    runtime_env = (obj.get("spec") or {}).get("runtimeEnvYAML") if obj.get("kind") == "RayJob" else None
    if runtime_env:
        try:
            env_vars = (yaml.safe_load(runtime_env) or {}).get("env_vars") or {}
        except (yaml.YAMLError, AttributeError):
            problems.append(Problem(source, label, "$.spec.runtimeEnvYAML", "not a YAML mapping"))
            env_vars = {}
        for name in env_vars:
            if is_secret_name(str(name)):
                problems.append(Problem(source, label, f"$.spec.runtimeEnvYAML.env_vars.{name}",
                                        f"{name} is a credential in the runtime env (stored in the RayJob, "
                                        "shown by the dashboard); give it to the pods from the Secret"))
    return problems


def ray_cluster_spec(obj: dict) -> tuple[tuple, dict] | None:
    """(path, spec) of the Ray cluster an object defines: a RayCluster's spec, a RayJob's rayClusterSpec."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "RayCluster":
        return ("spec",), spec
    if obj.get("kind") == "RayJob" and isinstance(spec.get("rayClusterSpec"), dict):
        return ("spec", "rayClusterSpec"), spec["rayClusterSpec"]
    return None


def check_ray_cluster(obj: dict, source: str) -> list[Problem]:
    """Token authentication on, and every Ray pod (head and worker groups) with a memory-backed /dev/shm
    big enough for Ray's default object store."""
    found = ray_cluster_spec(obj)
    if found is None:
        return []
    base, spec = found
    label, problems = object_label(obj), []
    if (spec.get("authOptions") or {}).get("mode") != "token":
        problems.append(Problem(source, label, json_path((*base, "authOptions", "mode")),
                                "Ray token authentication is off; set authOptions.mode: token"))
    groups = [(("headGroupSpec",), spec.get("headGroupSpec") or {})]
    groups += [(("workerGroupSpecs", i), g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])]
    for group_path, group in groups:
        pod = ((group.get("template") or {}).get("spec")) or {}
        problems += _check_shm(pod, (*base, *group_path, "template", "spec"), source, label)
    return problems


def _check_shm(pod: dict, path: tuple, source: str, label: str) -> list[Problem]:
    containers = pod.get("containers") or []
    if not containers:
        return [Problem(source, label, json_path((*path, "containers")), "no containers")]
    ray = containers[0]  # KubeRay runs Ray in the first container
    mount = next((m for m in ray.get("volumeMounts") or [] if m.get("mountPath") == "/dev/shm"), None)
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    volume = volumes.get(mount.get("name")) if mount else None
    empty_dir = (volume or {}).get("emptyDir")
    if not isinstance(empty_dir, dict) or empty_dir.get("medium") != "Memory":
        return [Problem(source, label, json_path((*path, "containers", 0, "volumeMounts")),
                        "no emptyDir with medium: Memory mounted at /dev/shm; Ray's object store "
                        "would be capped at the runtime's 64 MiB /dev/shm")]
    size, memory = empty_dir.get("sizeLimit"), ((ray.get("resources") or {}).get("limits") or {}).get("memory")
    if size is None or memory is None:
        return []
    try:
        need = min(OBJECT_STORE_SHARE * quantity_bytes(memory), OBJECT_STORE_MAX_BYTES)
        have = quantity_bytes(size)
    except ValueError as exc:
        return [Problem(source, label, json_path(path), str(exc))]
    if have < need:
        at = json_path((*path, "volumes", list(volumes).index(mount["name"]), "emptyDir", "sizeLimit"))
        return [Problem(source, label, at, f"/dev/shm {size} is below Ray's default object store for a "
                        f"{memory} memory limit ({need / 2**30:.1f}Gi: 30%, at most 200 GB)")]
    return []


def check_rayjob(obj: dict, source: str, repo_root: Path) -> list[Problem]:
    """A RayJob's entrypoint runs a catalog job whose file exists under ``repo_root`` and whose config
    loads with the entrypoint's overrides; the job cleans up after itself."""
    if obj.get("kind") != "RayJob":
        return []
    label, spec = object_label(obj), obj.get("spec") or {}
    problems = []
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append(Problem(source, label, "$.spec.shutdownAfterJobFinishes", "must be True: the job's "
                                "cluster would stay up (and bill) after the job ends"))
    for key in ("ttlSecondsAfterFinished", "backoffLimit"):
        if key not in spec:
            problems.append(Problem(source, label, json_path(("spec", key)), "not set"))
    if "rayClusterSpec" not in spec and "clusterSelector" not in spec:
        problems.append(Problem(source, label, "$.spec", "neither rayClusterSpec nor clusterSelector: no cluster to run on"))
    where = "$.spec.entrypoint"
    try:
        job, conf, overrides = parse_entrypoint(str(spec.get("entrypoint", "")))
    except MedrayError as exc:
        return [*problems, Problem(source, label, where, str(exc))]
    job_file = repo_root / "jobs" / f"{job.name}.py"
    if not job_file.is_file():
        problems.append(Problem(source, label, where, f"job file {job_file} does not exist"))
    conf_file = repo_root / conf
    if not conf_file.is_file():
        return [*problems, Problem(source, label, where, f"config {conf_file} does not exist")]
    try:
        job.load_config(str(conf_file), overrides)
    except MedrayError as exc:
        problems.append(Problem(source, label, where, f"config does not load: {exc}"))
    return problems


def check_catalog_coverage(objects: list[dict], source: str) -> list[Problem]:
    """Every job of ``medray.job_catalog.JOBS`` has exactly one RayJob, and no RayJob runs an unknown job."""
    seen: dict[str, list[str]] = {name: [] for name in JOBS}
    for obj in objects:
        if obj.get("kind") != "RayJob":
            continue
        try:
            job, _, _ = parse_entrypoint(str((obj.get("spec") or {}).get("entrypoint", "")))
        except MedrayError:
            continue  # reported by check_rayjob
        seen[job.name].append(object_label(obj))
    problems = []
    for name, labels in seen.items():
        if len(labels) != 1:
            what = "no RayJob" if not labels else f"{len(labels)} RayJobs ({', '.join(labels)})"
            problems.append(Problem(source, f"job {name}", "$", f"{what} runs jobs/{name}.py; want exactly one"))
    return problems


def check_cluster_specs_match(objects: list[dict], source: str) -> list[Problem]:
    """Each RayJob's rayClusterSpec equals the RayCluster's spec (when there is one RayCluster): an overlay
    that resizes the RayCluster but does not re-run the sharing transformer leaves its RayJobs at base sizes."""
    clusters = [o for o in objects if o.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        return []
    want = clusters[0].get("spec")
    problems = []
    for obj in objects:
        found = ray_cluster_spec(obj) if obj.get("kind") == "RayJob" else None
        if found is not None and found[1] != want:
            path = _first_difference(want, found[1], ("spec", "rayClusterSpec"))
            problems.append(Problem(source, object_label(obj), path, f"differs from {object_label(clusters[0])}'s "
                                    "spec (list ../transformers/rayjob-cluster-spec after the overlay's patches)"))
    return problems


def _first_difference(a, b, path: tuple) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), (*path, key))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, (*path, i))
    return json_path(path)
