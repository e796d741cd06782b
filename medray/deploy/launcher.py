"""Checks for a Ray cluster launcher config (``ray up``) that catch mistakes before EC2 bills.

``ray up`` validates a config only once it is running against the cloud, and it
never checks what medray relies on: a head that runs no tasks, GPU counts that
match the instances, token authentication on every ``ray start``, and no
credential written into the file. ``check_launcher_config`` runs Ray's own JSON
schema and ``validate_config`` offline, then those rules, and returns every
problem at once, each naming the key path it is about.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from medray.deploy.secret_names import CREDENTIAL_ENV_NAMES

# GPUs per instance for the types medray deploys on (and their neighbours in the same families).
GPU_COUNTS: dict[str, int] = {
    "p5.48xlarge": 8, "p5e.48xlarge": 8, "p5en.48xlarge": 8, "p4d.24xlarge": 8, "p4de.24xlarge": 8,
    "g6e.xlarge": 1, "g6e.2xlarge": 1, "g6e.4xlarge": 1, "g6e.8xlarge": 1, "g6e.16xlarge": 1,
    "g6e.12xlarge": 4, "g6e.24xlarge": 4, "g6e.48xlarge": 8,
    "g6.xlarge": 1, "g6.2xlarge": 1, "g6.4xlarge": 1, "g6.8xlarge": 1, "g6.16xlarge": 1,
    "g6.12xlarge": 4, "g6.24xlarge": 4, "g6.48xlarge": 8,
    "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.8xlarge": 1, "g5.16xlarge": 1,
    "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8,
}
# Instance families with GPUs: a type from one of these missing in GPU_COUNTS cannot be checked.
_GPU_FAMILY = re.compile(r"^[pg]\d+[a-z0-9-]*\.", re.IGNORECASE)

_RAY_START = re.compile(r"\bray\s+start\b")
_AUTH_MODE_TOKEN = re.compile(r"\bRAY_AUTH_MODE=(['\"]?)token\1(?=[\s;&|)]|$)")
_AUTH_MODE_ANY = re.compile(r"\bRAY_AUTH_MODE=(['\"]?)(\w*)\1")
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
# Names whose value is a credential (or, for MLflow, may embed one): never written inline.
SECRET_NAMES = CREDENTIAL_ENV_NAMES
# NAME=value or NAME: value in a command; a value that starts with $ is a reference, not a literal.
_INLINE_SECRET = re.compile(
    r"\b(" + "|".join(SECRET_NAMES) + r")\b\s*[=:]\s*(?!['\"]?\$)(['\"]?)[^\s'\";&|)]+",
    re.IGNORECASE,
)


def ray_schema_path() -> Path:
    """The launcher schema shipped with the installed Ray (what ``ray up`` itself checks)."""
    import ray.autoscaler

    return Path(ray.autoscaler.__file__).parent / "ray-schema.json"


def _key_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _schema_problems(config: dict) -> list[str]:
    import jsonschema

    schema = json.loads(ray_schema_path().read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_key_path(e.absolute_path)}: Ray schema: {e.message}" for e in errors]


def _ray_validate_problems(config: dict) -> list[str]:
    """Ray's own ``prepare_config`` + ``validate_config`` (defaults merged, offline)."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:  # a Ray without the private module: the schema check above still ran
        return []
    util_logger = logging.getLogger("ray.autoscaler._private.util")
    level = util_logger.level
    util_logger.setLevel(logging.WARNING)  # it logs an INFO line per filled-in default
    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except Exception as err:  # noqa: BLE001  (any failure here is a finding, reported as one)
        message = getattr(err, "message", None) or str(err)
        return [f"<top level>: Ray validate_config: {type(err).__name__}: {message}"]
    finally:
        util_logger.setLevel(level)
    return []


def _node_types(config: dict) -> dict:
    types = config.get("available_node_types")
    return types if isinstance(types, dict) else {}


def _worker_bounds_problems(config: dict) -> list[str]:
    problems: list[str] = []
    types = _node_types(config)
    head = config.get("head_node_type")
    if head not in types:
        problems.append(
            f"head_node_type: {head!r} is not one of available_node_types ({', '.join(types) or 'none'})"
        )
    else:
        cpus = (types[head].get("resources") or {}).get("CPU")
        if cpus != 0:
            problems.append(
                f"available_node_types.{head}.resources.CPU: the head must run no tasks "
                f"(CPU: 0), found {cpus!r}"
            )
    global_max = config.get("max_workers")
    total_min = 0
    for name, spec in types.items():
        low, high = spec.get("min_workers", 0), spec.get("max_workers")
        if isinstance(low, int):
            total_min += low
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append(
                f"available_node_types.{name}: min_workers ({low}) > max_workers ({high})"
            )
    if isinstance(global_max, int) and total_min > global_max:
        problems.append(f"max_workers: {global_max} is below the sum of min_workers ({total_min})")
    return problems


def _run_options(config: dict, spec: dict) -> list[str]:
    """The docker run options a worker of this type starts with (global + its own worker ones)."""
    docker = config.get("docker") or {}
    own = (spec.get("docker") or {}).get("worker_run_options")
    worker = own if own is not None else docker.get("worker_run_options", [])
    return [str(o) for o in docker.get("run_options", []) + list(worker or [])]


def _gpu_problems(config: dict) -> list[str]:
    problems: list[str] = []
    docker = config.get("docker") or {}
    explicit_runtime = bool(docker.get("image") or docker.get("worker_image")) and docker.get(
        "disable_automatic_runtime_detection", False
    )
    for name, spec in _node_types(config).items():
        where = f"available_node_types.{name}"
        instance = str((spec.get("node_config") or {}).get("InstanceType", ""))
        declared = (spec.get("resources") or {}).get("GPU", 0)
        expected = GPU_COUNTS.get(instance)
        if expected is None and _GPU_FAMILY.match(instance):
            problems.append(
                f"{where}.node_config.InstanceType: {instance} has GPUs but is not in medray's "
                "GPU_COUNTS table; add it so its resources can be checked"
            )
            continue
        expected = expected or 0
        if declared != expected:
            problems.append(
                f"{where}.resources.GPU: {instance} has {expected} GPU(s), the node type declares "
                f"{declared!r}"
            )
        if expected and explicit_runtime and name != config.get("head_node_type"):
            options = " ".join(_run_options(config, spec))
            if "--gpus" not in options and "--runtime=nvidia" not in options:
                problems.append(
                    f"{where}.docker.worker_run_options: GPU node without --gpus all while "
                    "automatic runtime detection is off: containers would see no GPU"
                )
    return problems


def _token_auth_problems(config: dict) -> list[str]:
    problems: list[str] = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        commands = config.get(key) or []
        starts = [(i, str(c)) for i, c in enumerate(commands) if _RAY_START.search(str(c))]
        if not starts:
            problems.append(f"{key}: no `ray start` command")
        for i, command in starts:
            before_start = command[: _RAY_START.search(command).start()]
            if not _AUTH_MODE_TOKEN.search(before_start):
                problems.append(
                    f"{key}[{i}]: `ray start` without RAY_AUTH_MODE=token: token authentication "
                    "is off (set it in the same command, before `ray start`)"
                )
    for path, text in _strings(config):
        for match in _AUTH_MODE_ANY.finditer(text):
            if match.group(2).lower() != "token":
                problems.append(f"{path}: RAY_AUTH_MODE={match.group(2)} turns token authentication off")
    return problems


def _strings(node, path: tuple = ()) -> Iterator[tuple[str, str]]:
    """Every string in the config (keys included, as ``key`` entries) with its key path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield _key_path(path + (key,)), str(key)
            yield from _strings(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, path + (i,))
    elif isinstance(node, str):
        yield _key_path(path), node


def _secret_problems(config: dict) -> list[str]:
    """Credentials written into the file; messages name the place, never the value."""
    problems: list[str] = []
    for path, text in _strings(config):
        if _ACCESS_KEY_ID.search(text):
            problems.append(f"{path}: an AWS access key id is written inline; use the instance profile")
        for match in _INLINE_SECRET.finditer(text):
            problems.append(
                f"{path}: {match.group(1)} has a literal value; fetch it at start time "
                "(Secrets Manager / SSM) instead"
            )
    for path, key, value in _secret_keyed_values(config):
        problems.append(f"{path}: {key} has a literal value ({len(value)} characters) in the config")
    return problems


def _secret_keyed_values(node, path: tuple = ()) -> Iterator[tuple[str, str, str]]:
    """``{SECRET_NAME: "literal"}`` mappings, e.g. an env block or provider.aws_credentials."""
    names = {n.lower() for n in SECRET_NAMES}
    if isinstance(node, dict):
        for key, value in node.items():
            here = path + (key,)
            if str(key).lower() in names and isinstance(value, str) and value and not value.startswith("$"):
                yield _key_path(here), str(key), value
            else:
                yield from _secret_keyed_values(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _secret_keyed_values(value, path + (i,))


def check_launcher_dict(config: dict) -> list[str]:
    """Every problem in a parsed launcher config, as ``"key.path: what is wrong"`` lines."""
    if not isinstance(config, dict):
        return [f"<top level>: a launcher config is a mapping, found {type(config).__name__}"]
    problems = _schema_problems(config)
    if not problems:  # Ray's own pass would repeat every schema error
        problems += _ray_validate_problems(config)
    problems += _worker_bounds_problems(config)
    problems += _gpu_problems(config)
    problems += _token_auth_problems(config)
    problems += _secret_problems(config)
    return list(dict.fromkeys(problems))


def check_launcher_config(path: str | os.PathLike) -> list[str]:
    """Every problem in the launcher YAML at ``path``; ``[]`` when ``ray up`` may run it.

    An unreadable file or invalid YAML is reported as a problem, not raised.
    """
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        return [f"<file>: cannot read {path}: {err}"]
    return check_launcher_dict(config)
