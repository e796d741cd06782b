"""k8s/: the rendered base and overlays validate, and every check fails on a planted bad copy.

Renders with the real kustomize (kubectl's or standalone) and validates against
the real KubeRay CRDs in ../shared/data/kuberay-crds; skipped with a message
where either is missing.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from medray.deploy.crd import CRDError, strict_schema, validate_custom_resource
from medray.deploy.k8s_manifests import (
    render_objects,
    validate_kustomization,
    validate_manifest_file,
)
from medray.deploy.k8s_render import KustomizeError, kustomize_command
from medray.job_catalog import JOBS, REPO_ROOT, parse_entrypoint

K8S = REPO_ROOT / "k8s"
TARGETS = ["base", "overlays/dev", "overlays/gpu-h100"]


@pytest.fixture(scope="module")
def crd_dir(shared_data: Path) -> Path:
    path = shared_data / "kuberay-crds"
    if not path.is_dir():
        pytest.skip(f"KubeRay CRDs not found: {path}")
    return path


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    try:
        kustomize_command()
    except KustomizeError as exc:
        pytest.skip(str(exc))
    return {target: render_objects(K8S / target) for target in TARGETS}


def _one(objects: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return copy.deepcopy(obj)


def _group(cluster_spec: dict, name: str) -> dict:
    [group] = [g for g in cluster_spec["workerGroupSpecs"] if g["groupName"] == name]
    return group


def _write(tmp_path: Path, *objects: dict) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


# --- the real manifests ----------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_clean(target, rendered, crd_dir):
    assert validate_kustomization(K8S / target, crd_dir) == []
    kinds = sorted(o["kind"] for o in rendered[target])
    assert kinds == ["ConfigMap", "Deployment", "RayCluster"] + ["RayJob"] * 9 + ["Service"]
    assert {o["metadata"]["namespace"] for o in rendered[target]} == {"medray"}


def test_every_catalog_job_has_exactly_one_rayjob(rendered):
    for target, objects in rendered.items():
        rayjobs = [o for o in objects if o["kind"] == "RayJob"]
        names = sorted(parse_entrypoint(o["spec"]["entrypoint"])[0].name for o in rayjobs)
        assert names == sorted(JOBS), target
        for job in rayjobs:
            spec = job["spec"]
            assert "s3://medray-data/" in spec["entrypoint"]
            assert (spec["suspend"], spec["shutdownAfterJobFinishes"]) == (True, True)
            assert spec["ttlSecondsAfterFinished"] == 600 and spec["backoffLimit"] == 2
            assert "env_vars" in yaml.safe_load(spec["runtimeEnvYAML"])


@pytest.mark.parametrize("target, gpus, gpu_max, shm", [
    ("base", "1", 8, "30Gi"), ("overlays/dev", "1", 0, "30Gi"), ("overlays/gpu-h100", "8", 4, "190Gi"),
])
def test_overlay_sizes_reach_every_rayjob_cluster(rendered, target, gpus, gpu_max, shm):
    objects = rendered[target]
    cluster = _one(objects, "RayCluster", "medray")["spec"]
    specs = [cluster] + [o["spec"]["rayClusterSpec"] for o in objects if o["kind"] == "RayJob"]
    assert len(specs) == 10
    for spec in specs:
        gpu = _group(spec, "gpu")
        assert gpu["maxReplicas"] == gpu_max
        assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert gpu["template"]["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": shm}
        assert spec == cluster


def test_overlay_that_skips_the_sharing_transformer_is_caught(tmp_path, rendered, crd_dir):
    """Patches run before a Component and after the base's transformer: an overlay must re-run it."""
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    kustomization = k8s / "overlays/gpu-h100/kustomization.yaml"
    text = kustomization.read_text()
    kustomization.write_text(text[: text.index("# After the patches")])
    problems = validate_kustomization(k8s / "overlays/gpu-h100", crd_dir)
    assert len(problems) == 9
    assert {p.object for p in problems} == {f"RayJob/{name.replace('_', '-')}" for name in JOBS}
    assert {p.path for p in problems} == {
        "$.spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].resources.limits.cpu"}
    assert "differs from RayCluster/medray's spec" in problems[0].message


# --- planted bad copies ------------------------------------------------------------------


def test_clean_copy_written_to_a_file_has_no_problems(tmp_path, rendered, crd_dir):
    objects = rendered["overlays/dev"]
    assert validate_manifest_file(_write(tmp_path, *objects), crd_dir) == []


def test_typo_in_a_rayjob_field_is_named_with_its_path(tmp_path, rendered, crd_dir):
    job = _one(rendered["base"], "RayJob", "met-build")
    job["spec"]["shutdownAfterJobFinish"] = job["spec"].pop("shutdownAfterJobFinishes")
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["rayStartParam"] = {}
    path = _write(tmp_path, job)
    found = {(p.path, p.message) for p in validate_manifest_file(path, crd_dir)}
    assert found == {
        ("$.spec", "Additional properties are not allowed ('shutdownAfterJobFinish' was unexpected)"),
        ("$.spec.rayClusterSpec.workerGroupSpecs[0]", "Additional properties are not allowed ('rayStartParam' was unexpected)"),
        ("$.spec.shutdownAfterJobFinishes", "must be True: the job's cluster would stay up (and bill) after the job ends"),
    }
    assert all(p.source == str(path) and p.object == "RayJob/met-build" for p in validate_manifest_file(path, crd_dir))


def test_core_object_typo_fails_kubernetes_schema(tmp_path, rendered, crd_dir):
    deployment = _one(rendered["base"], "Deployment", "mlflow")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    [problem] = validate_manifest_file(_write(tmp_path, deployment), crd_dir)
    assert (problem.object, problem.path) == ("Deployment/mlflow", "$.spec")
    assert "'replica' was unexpected" in problem.message


@pytest.fixture()
def repo_copy(tmp_path) -> Path:
    """jobs/ and conf/ of this checkout, to break one file at a time."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "jobs", root / "jobs")
    shutil.copytree(REPO_ROOT / "conf", root / "conf")
    return root


def test_missing_job_file_and_unknown_config_key(tmp_path, rendered, crd_dir, repo_copy):
    jobs = [_one(rendered["base"], "RayJob", n) for n in ("met-build", "met-grow", "data-quality")]
    path = _write(tmp_path, *jobs)
    assert validate_manifest_file(path, crd_dir, repo_root=repo_copy) == []
    (repo_copy / "jobs/met_grow.py").unlink()
    grow = repo_copy / "conf/met/grow.yaml"
    grow.write_text(grow.read_text() + "min_cuont: 3\n")
    jobs[2]["spec"]["entrypoint"] += " rounds=two"
    problems = validate_manifest_file(_write(tmp_path, *jobs), crd_dir, repo_root=repo_copy)
    assert [(p.object, p.path) for p in problems] == [("RayJob/met-grow", "$.spec.entrypoint")] * 2 + [
        ("RayJob/data-quality", "$.spec.entrypoint")]
    assert f"job file {repo_copy / 'jobs/met_grow.py'} does not exist" == problems[0].message
    assert "min_cuont" in problems[1].message and "config does not load" in problems[1].message
    assert "'rounds'" in problems[2].message


def test_entrypoint_of_an_unknown_job(tmp_path, rendered, crd_dir):
    job = _one(rendered["base"], "RayJob", "synth")
    job["spec"]["entrypoint"] = "python jobs/synthesis.py conf/synth/tiny.yaml"
    [problem] = validate_manifest_file(_write(tmp_path, job), crd_dir)
    assert problem.path == "$.spec.entrypoint" and "no job named 'synthesis'" in problem.message


def test_inline_credentials_are_refused_wherever_they_are(tmp_path, rendered, crd_dir):
    cluster = _one(rendered["base"], "RayCluster", "medray")
    env = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    index = next(i for i, v in enumerate(env) if v["name"] == "AWS_SECRET_ACCESS_KEY")
    env[index] = {"name": "AWS_SECRET_ACCESS_KEY", "value": "planted-secret"}
    job = _one(rendered["base"], "RayJob", "met-build")
    job["spec"]["runtimeEnvYAML"] = "env_vars:\n  MLFLOW_TRACKING_PASSWORD: hunter2\n  TOKENIZERS_PARALLELISM: 'false'\n"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "medray-secrets"},
              "stringData": {"AWS_SECRET_ACCESS_KEY": "planted-secret"}}
    settings = _one(rendered["base"], "ConfigMap", "medray-settings")
    settings["data"]["RAY_AUTH_TOKEN"] = "planted"
    problems = validate_manifest_file(_write(tmp_path, cluster, job, secret, settings), crd_dir)
    found = {(p.object, p.path) for p in problems if "differs from" not in p.message}
    assert found == {
        ("RayCluster/medray", f"$.spec.headGroupSpec.template.spec.containers[0].env[{index}].value"),
        ("RayJob/met-build", "$.spec.runtimeEnvYAML.env_vars.MLFLOW_TRACKING_PASSWORD"),
        ("Secret/medray-secrets", "$"),
        ("ConfigMap/medray-settings", "$.data.RAY_AUTH_TOKEN"),
    }


def test_ray_pods_need_a_big_enough_memory_shm_and_token_auth(tmp_path, rendered, crd_dir):
    cluster = _one(rendered["base"], "RayCluster", "medray")
    spec = cluster["spec"]
    del spec["authOptions"]
    spec["workerGroupSpecs"][0]["template"]["spec"]["volumes"] = []
    spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["volumeMounts"] = []
    spec["workerGroupSpecs"][1]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = "8Gi"
    spec["headGroupSpec"]["template"]["spec"]["volumes"][0]["emptyDir"] = {}
    problems = validate_manifest_file(_write(tmp_path, cluster), crd_dir)
    by_path = {p.path: p.message for p in problems}
    assert sorted(by_path) == [
        "$.spec.authOptions.mode",
        "$.spec.headGroupSpec.template.spec.containers[0].volumeMounts",
        "$.spec.workerGroupSpecs[0].template.spec.containers[0].volumeMounts",
        "$.spec.workerGroupSpecs[1].template.spec.volumes[0].emptyDir.sizeLimit",
    ]
    assert "28.8Gi" in by_path["$.spec.workerGroupSpecs[1].template.spec.volumes[0].emptyDir.sizeLimit"]


# --- the validators themselves -------------------------------------------------------------


def test_strict_schema_closes_objects_and_keeps_kubernetes_extensions():
    schema = strict_schema({
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "free": {"type": "object", "properties": {"a": {"type": "string"}},
                     "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "note": {"type": "string", "nullable": True},
        },
    })
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert schema["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schema["properties"]["note"]["type"] == ["string", "null"]


def test_int_or_string_quantities_in_the_ray_crd(crd_dir, rendered):
    cluster = _one(rendered["base"], "RayCluster", "medray")
    limits = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits["cpu"] = 4
    assert validate_custom_resource(cluster, crd_dir, "x.yaml") == []
    limits["cpu"] = [4]
    [problem] = validate_custom_resource(cluster, crd_dir, "x.yaml")
    assert problem.path == "$.spec.headGroupSpec.template.spec.containers[0].resources.limits.cpu"
    assert str(problem).startswith("x.yaml: RayCluster/medray: $.spec.headGroupSpec")


def test_missing_tools_and_crds_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(CRDError, match="does not exist"):
        validate_custom_resource({"apiVersion": "ray.io/v1", "kind": "RayJob"}, tmp_path / "none")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KustomizeError, match="neither `kubectl` nor `kustomize` is on PATH"):
        validate_kustomization(K8S / "base", tmp_path)
