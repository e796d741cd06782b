"""Checks for the container image definition: a pinned base and pinned, mutually consistent versions.

An image built from ``latest`` or from ``>=`` ranges changes under the same tag
from one build to the next, and a GPU stack drifts apart silently (a torch that
vLLM was not built for, a Ray in the image that differs from the one the
driver runs). ``check_image`` reads the Dockerfile and its requirement files
and returns every problem as ``"file:line: what is wrong"``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_DOCKERFILE = "cluster/Dockerfile"
DEFAULT_REQUIREMENTS = "cluster/requirements-gpu.txt"
DEFAULT_CONSTRAINTS = "cluster/constraints-gpu.txt"
DEFAULT_PYPROJECT = "pyproject.toml"

_RAY_IMAGES = re.compile(r"^(?:docker\.io/)?rayproject/ray(?:-ml|-llm)?$")
_VERSION_TAG = re.compile(r"\d+\.\d+")
_FLOATING_TAGS = re.compile(r"latest|nightly|master|main|dev", re.IGNORECASE)
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_ARG = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    version: Version
    line: int


@dataclass(frozen=True)
class BaseImage:
    reference: str  # as written after FROM, with build ARGs substituted
    line: int

    @property
    def repository(self) -> str:
        ref = self.reference.split("@", 1)[0]
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        return ref[:colon] if colon > slash else ref

    @property
    def tag(self) -> str | None:
        ref = self.reference.split("@", 1)[0]
        slash, colon = ref.rfind("/"), ref.rfind(":")
        return ref[colon + 1 :] if colon > slash else None

    @property
    def has_digest(self) -> bool:
        return bool(_DIGEST.search(self.reference))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Dockerfile instructions with continuation lines joined, numbered by their first line."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def base_images(dockerfile_text: str) -> list[BaseImage]:
    """External images the Dockerfile builds FROM (earlier stages referenced by name are skipped)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[BaseImage] = []
    for number, line in _logical_lines(dockerfile_text):
        word, _, rest = line.partition(" ")
        if word.upper() == "ARG" and not images:
            name, _, default = rest.strip().partition("=")
            args[name.strip()] = default.strip().strip("\"'")
        if word.upper() != "FROM":
            continue
        parts = [p for p in rest.split() if not p.startswith("--")]
        if not parts:
            continue
        reference = _ARG.sub(lambda m: args.get(m.group(1), m.group(0)), parts[0])
        if len(parts) >= 3 and parts[1].upper() == "AS":
            stages.add(parts[2].lower())
        if reference.lower() in stages or reference == "scratch":
            continue
        images.append(BaseImage(reference, number))
    return images


def read_pins(path: str | os.PathLike) -> tuple[dict[str, Pin], list[str]]:
    """``==`` pins of a requirements/constraints file by canonical name, and the lines that are not pins."""
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue  # comments and pip options (-c, --extra-index-url)
        where = f"{path}:{number}"
        try:
            req = Requirement(line)
        except InvalidRequirement as err:
            problems.append(f"{where}: not a requirement: {err}")
            continue
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
            problems.append(f"{where}: {req.name} is not pinned to one version with == ({line})")
            continue
        try:
            version = Version(specs[0].version)
        except InvalidVersion:
            problems.append(f"{where}: {req.name}: {specs[0].version!r} is not a version")
            continue
        name = canonicalize_name(req.name)
        if name in pins:
            problems.append(f"{where}: {req.name} is pinned twice (first on line {pins[name].line})")
        pins[name] = Pin(req, version, number)
    return pins, problems


def pyproject_ranges(path: str | os.PathLike) -> dict[str, SpecifierSet]:
    """Every dependency range pyproject.toml declares (main and extras), by canonical name."""
    project = tomllib.loads(Path(path).read_text()).get("project", {})
    declared = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        declared += extra
    ranges: dict[str, SpecifierSet] = {}
    for line in declared:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        ranges[name] = ranges.get(name, SpecifierSet()) & req.specifier
    return ranges


def _unpinned_dependencies(requirements, pins: dict[str, Pin], pyproject) -> list[str]:
    """The image installs medray with --no-deps: each of its dependencies (and the gpu extra) needs a pin."""
    project = tomllib.loads(Path(pyproject).read_text()).get("project", {})
    needed = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("gpu", []))
    return [
        f"{requirements}: {Requirement(line).name} is a dependency in {pyproject} but has no pin "
        "(the image installs medray with --no-deps, so it would be missing)"
        for line in needed
        if canonicalize_name(Requirement(line).name) not in pins
    ]


def _base_problems(dockerfile: str | os.PathLike, images: list[BaseImage]) -> list[str]:
    problems: list[str] = []
    if not images:
        problems.append(f"{dockerfile}: no FROM line")
    for image in images:
        where = f"{dockerfile}:{image.line}: FROM {image.reference}"
        if image.has_digest:
            continue
        tag = image.tag
        if tag is None:
            problems.append(f"{where}: no tag means `latest`; pin a version tag or a digest")
        elif _FLOATING_TAGS.search(tag) or not _VERSION_TAG.search(tag):
            problems.append(f"{where}: tag {tag!r} moves; pin a version tag or a digest")
    return problems


def _ray_version_problems(dockerfile, images: list[BaseImage], pins: dict[str, Pin], requirements) -> list[str]:
    problems: list[str] = []
    for image in images:
        if not _RAY_IMAGES.match(image.repository) or not image.tag:
            continue
        match = re.match(r"(\d+\.\d+\.\d+)", image.tag)
        if not match:
            continue
        ray = pins.get("ray")
        if ray is None:
            problems.append(f"{requirements}: no ray pin; the base image {image.reference} has Ray {match.group(1)}")
        elif ray.version != Version(match.group(1)):
            problems.append(
                f"{requirements}:{ray.line}: ray=={ray.version} but the base image "
                f"({dockerfile}:{image.line}) has Ray {match.group(1)}"
            )
    return problems


def _range_problems(source, pins: dict[str, Pin], ranges: dict[str, SpecifierSet], pyproject) -> list[str]:
    problems: list[str] = []
    for name, pin in pins.items():
        allowed = ranges.get(name)
        if allowed is not None and not allowed.contains(pin.version, prereleases=True):
            problems.append(
                f"{source}:{pin.line}: {pin.requirement.name}=={pin.version} is outside "
                f"{pyproject}'s range {pin.requirement.name}{allowed}"
            )
    return problems


def check_image(
    dockerfile: str | os.PathLike = DEFAULT_DOCKERFILE,
    requirements: str | os.PathLike = DEFAULT_REQUIREMENTS,
    pyproject: str | os.PathLike = DEFAULT_PYPROJECT,
    constraints: str | os.PathLike | None = None,
) -> list[str]:
    """Every problem in the image definition; ``[]`` when it builds the same image every time.

    Raises FileNotFoundError when one of the named files is missing.
    """
    images = base_images(Path(dockerfile).read_text())
    pins, problems = read_pins(requirements)
    problems = _base_problems(dockerfile, images) + problems
    ranges = pyproject_ranges(pyproject)
    problems += _range_problems(requirements, pins, ranges, pyproject)
    problems += _unpinned_dependencies(requirements, pins, pyproject)
    problems += _ray_version_problems(dockerfile, images, pins, requirements)
    if constraints is not None:
        locked, lock_problems = read_pins(constraints)
        problems += lock_problems + _range_problems(constraints, locked, ranges, pyproject)
        for name, pin in pins.items():
            other = locked.get(name)
            if other is not None and other.version != pin.version:
                problems.append(
                    f"{constraints}:{other.line}: {name}=={other.version} contradicts "
                    f"{requirements}:{pin.line} ({name}=={pin.version})"
                )
    return problems
