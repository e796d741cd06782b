"""`medray deploy ...`: check what goes to a cluster before a cluster is paid for.

Each command prints every problem it finds (not only the first) and exits 1
if there is any, so it can gate a CI pipeline or a `kubectl apply`.
"""

from __future__ import annotations

from pathlib import Path

import typer

deploy_app = typer.Typer(help="Check cluster deployments: KubeRay manifests, the Ray cluster launcher config, the image.",
                         no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of text.")


@deploy_app.callback()
def deploy() -> None:
    """Check cluster deployments: KubeRay manifests, the Ray cluster launcher config, the image."""


def _report(what: str, problems: list, checked: dict, as_json: bool) -> None:
    from medray import console as out

    lines = [str(p) for p in problems]
    if as_json:
        out.print_json({"target": what, "problems": lines, **checked})
    else:
        for line in lines:
            print(line)
        summary = ", ".join(f"{k} {v}" for k, v in checked.items())
        print(f"{what}: {len(lines)} problem(s){'; ' + summary if summary else ''}")
    if lines:
        raise typer.Exit(1)


@deploy_app.command("check-k8s")
def check_k8s(path: Path = typer.Argument(..., help="A kustomize folder (k8s/overlays/dev) or one manifest file"),
              crds: Path = typer.Option(..., "--crds", help="Folder with the KubeRay CRD YAMLs of the operator you run "
                                        "(ray-operator/config/crd/bases in the KubeRay release)"),
              as_json: bool = JsonOpt) -> None:
    """Render (kustomize) and validate every object: KubeRay CRDs, Kubernetes schemas, entrypoints, secrets, /dev/shm."""
    from medray.deploy.k8s_manifests import (
        render_objects,
        validate_kustomization,
        validate_manifest_file,
    )

    if path.is_dir():
        problems = validate_kustomization(path, crds)
        kinds: dict[str, int] = {}
        for obj in render_objects(path):
            kinds[obj.get("kind", "?")] = kinds.get(obj.get("kind", "?"), 0) + 1
        checked = {"objects": sum(kinds.values()), **{k: v for k, v in sorted(kinds.items())}}
    else:
        problems, checked = validate_manifest_file(path, crds), {}
    _report(str(path), problems, checked, as_json)


@deploy_app.command("check-launcher")
def check_launcher(path: Path = typer.Argument(Path("cluster/aws.yaml"), help="Ray cluster launcher YAML"),
                   as_json: bool = JsonOpt) -> None:
    """Validate a Ray cluster launcher config against Ray's schema and medray's rules (bounds, GPUs, token auth, no keys)."""
    from medray.deploy.launcher import check_launcher_config

    _report(str(path), check_launcher_config(path), {}, as_json)


@deploy_app.command("check-image")
def check_image_cmd(dockerfile: Path = typer.Option(Path("cluster/Dockerfile"), help="Image definition"),
                    requirements: Path = typer.Option(Path("cluster/requirements-gpu.txt"), help="Pinned requirements"),
                    constraints: Path = typer.Option(Path("cluster/constraints-gpu.txt"), help="Full resolved pins"),
                    pyproject: Path = typer.Option(Path("pyproject.toml"), help="medray's own version ranges"),
                    as_json: bool = JsonOpt) -> None:
    """Check the image pins: FROM pinned, every requirement ==, inside pyproject's ranges, Ray matching the base."""
    from medray.deploy.image import check_image

    problems = check_image(dockerfile, requirements, pyproject, constraints if constraints.exists() else None)
    _report(str(dockerfile), problems, {}, as_json)
