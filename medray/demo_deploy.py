"""`make demo` step 10: the cluster deployment checks, as `medray deploy check-*` runs them.

The KubeRay manifests need a kustomize (kubectl's or standalone) and the CRDs
of a KubeRay release (``$MEDRAY_KUBERAY_CRDS``, else the copy in
``../shared/data/kuberay-crds`` beside a checkout); without them that row says
why it was skipped, and the launcher and image checks still run.
"""

from __future__ import annotations

import os
from pathlib import Path

from medray import console as out
from medray.job_catalog import REPO_ROOT

OVERLAYS = ("k8s/base", "k8s/overlays/dev", "k8s/overlays/gpu-h100")


def _crd_dir() -> Path | None:
    for candidate in (os.environ.get("MEDRAY_KUBERAY_CRDS"), REPO_ROOT.parent / "shared" / "data" / "kuberay-crds"):
        if candidate and Path(candidate, "ray.io_rayjobs.yaml").is_file():
            return Path(candidate)
    return None


def _k8s_rows() -> list[tuple[str, str, str]]:
    from medray.deploy.k8s_manifests import render_objects, validate_kustomization
    from medray.deploy.k8s_render import KustomizeError, kustomize_command

    crds = _crd_dir()
    try:
        kustomize_command()
    except KustomizeError as err:
        return [("k8s/", "-", f"skipped: {err}")]
    if crds is None:
        return [("k8s/", "-", "skipped: no KubeRay CRDs (set MEDRAY_KUBERAY_CRDS to ray-operator/config/crd/bases)")]
    rows = []
    for overlay in OVERLAYS:
        path = REPO_ROOT / overlay
        problems = validate_kustomization(path, crds)
        objects = render_objects(path)
        jobs = sum(1 for o in objects if o.get("kind") == "RayJob")
        rows.append((overlay, f"{len(objects)} ({jobs} RayJobs)", str(len(problems))))
        for problem in problems:
            out.status(str(problem))
    return rows


def deploy_demo() -> dict:
    from medray.deploy.image import check_image
    from medray.deploy.launcher import check_launcher_config

    cluster = REPO_ROOT / "cluster"
    if not cluster.is_dir():
        out.status("no cluster/ folder beside the package (installed from a wheel): nothing to check")
        return {"checked": False}
    launcher = check_launcher_config(cluster / "aws.yaml")
    image = check_image(cluster / "Dockerfile", cluster / "requirements-gpu.txt", REPO_ROOT / "pyproject.toml",
                        cluster / "constraints-gpu.txt")
    rows = _k8s_rows() + [("cluster/aws.yaml", "-", str(len(launcher))), ("cluster/Dockerfile", "-", str(len(image)))]
    for problem in launcher + image:
        out.status(problem)
    out.table("Cluster deployment checks (medray deploy check-k8s / check-launcher / check-image)",
              ("target", "objects", "problems"), rows)
    problems = sum(int(r[2]) for r in rows if r[2].isdigit())
    return {"checked": True, "rows": rows, "problems": problems,
            "k8s_objects": sum(int(r[1].split()[0]) for r in rows if r[1] != "-")}
