"""Render a kustomize directory and split the output into objects.

``kubectl kustomize DIR`` (kustomize built into kubectl) or ``kustomize build
DIR``, whichever is on PATH: what is validated is exactly what ``kubectl
apply -k DIR`` would send, after every patch and transformer has run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from medray.errors import MedrayError


class KustomizeError(MedrayError):
    """No kustomize on PATH, or it could not build the directory."""


def kustomize_command() -> list[str]:
    """The command that renders a kustomization, without the directory; ``KustomizeError`` when none is installed."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise KustomizeError(
        "neither `kubectl` nor `kustomize` is on PATH: install kubectl (it has kustomize built in) "
        "or kustomize to render k8s/ manifests"
    )


def render_kustomization(directory: str | Path, timeout: float = 120) -> str:
    """The multi-document YAML that ``kubectl apply -k directory`` would apply."""
    directory = Path(directory)
    if not (directory / "kustomization.yaml").is_file() and not (directory / "kustomization.yml").is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    command = [*kustomize_command(), str(directory)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KustomizeError(f"{' '.join(command)} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise KustomizeError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return done.stdout


def split_documents(text: str, source: str = "<yaml>") -> list[dict]:
    """The objects of a multi-document YAML text (empty documents skipped); ``MedrayError`` naming
    ``source`` when it does not parse or a document is not a mapping."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise MedrayError(f"{source}: cannot parse YAML: {exc}") from None
    objects = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise MedrayError(f"{source}: document {i + 1} is a {type(doc).__name__}, not a Kubernetes object")
        objects.append(doc)
    return objects
