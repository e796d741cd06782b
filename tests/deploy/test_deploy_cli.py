"""`medray deploy check-*`: every problem printed, exit 1 on any, JSON for CI gates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def medray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medray", "deploy", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_check_launcher_passes_the_real_config_and_names_planted_problems(tmp_path):
    good = medray("check-launcher", "cluster/aws.yaml")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().endswith("cluster/aws.yaml: 0 problem(s)")

    bad = tmp_path / "aws.yaml"
    text = (REPO / "cluster" / "aws.yaml").read_text()
    assert "RAY_AUTH_MODE=token" in text
    bad.write_text(text.replace("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"))
    proc = medray("check-launcher", str(bad), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["target"] == str(bad)
    assert report["problems"] and all("RAY_AUTH_MODE" in p for p in report["problems"]), report


def test_check_image_passes_the_real_pins():
    proc = medray("check-image")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 problem(s)" in proc.stdout


def test_check_k8s_renders_an_overlay_and_counts_its_objects(shared_data):
    crds = shared_data / "kuberay-crds"
    if not crds.is_dir():
        pytest.skip(f"KubeRay CRDs not found at {crds}")
    if not (shutil.which("kubectl") or shutil.which("kustomize")):
        pytest.skip("neither kubectl nor kustomize is on PATH: kustomize overlays cannot be rendered here")
    proc = medray("check-k8s", "k8s/overlays/dev", "--crds", str(crds), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["problems"] == []
    assert report["RayJob"] == 9 and report["RayCluster"] == 1 and report["objects"] == 13
