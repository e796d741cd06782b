"""MLflow tracking for every job: one run per job, its whole config as params.

The tracking server is whatever ``MLFLOW_TRACKING_URI`` names (an ``http://``
server on a cluster); without it runs go to a SQLite file in the job's output
directory, since MLflow 3.10+ has no file store. Artifacts of a SQLite-backed
experiment are kept beside the database rather than in ``./mlruns`` of
whatever directory the job happened to start in.

Runs go through an explicit ``MlflowClient`` rather than MLflow's global
"active run", so a job can track without disturbing, or being disturbed by,
other MLflow users in the process (Ray Tune's callbacks, for one). In
distributed training only the rank-zero worker logs; the others get a run
object whose calls do nothing, so training code never branches on rank.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# MLflow's limits (mlflow.utils.validation): longer values are rejected.
MAX_PARAM_VALUE_LENGTH = 6000
REDACTED = "***"
_SECRET_WORDS = {"secret", "secrets", "password", "passwd", "token", "credential", "credentials"}
_SECRET_PAIRS = {("access", "key"), ("api", "key"), ("private", "key")}
_SECRET_JOINED = {"accesskey", "apikey", "privatekey", "secretkey"}


# --- where runs go ---------------------------------------------------------


def tracking_uri(default_dir: str | os.PathLike = ".") -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite file ``<default_dir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return f"sqlite:///{Path(default_dir).expanduser().resolve() / 'mlflow.db'}"


def job_tracking_uri(configured: str | None, output: str | os.PathLike) -> str:
    """Where a job logs: the URI its config names, else ``tracking_uri`` beside its output
    (the working directory when the output is remote)."""
    if configured:
        return configured
    output = str(output)
    return tracking_uri("." if "://" in output else str(Path(output).parent))


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


# --- params ----------------------------------------------------------------


def _words(key: str) -> list[str]:
    """``awsSecretAccessKey`` / ``aws_secret-access.key`` -> ``[aws, secret, access, key]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if w]


def looks_secret(key: str) -> bool:
    """Whole words only, so ``max_tokens`` and ``tokenizer`` are logged but ``hf_token`` is not."""
    words = _words(key)
    if any(w in _SECRET_WORDS or w in _SECRET_JOINED for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def _leaves(value: Any, key: str) -> Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if not value:
            yield key, "{}"
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        if not value:
            yield key, "[]"
        for i, v in enumerate(value):
            yield from _leaves(v, f"{key}.{i}" if key else str(i))
    else:
        yield key, value


def flatten_params(d: Mapping | Any, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: ``{"a": {"b": [1]}}`` -> ``{"a.b.0": "1"}``.

    Values are strings cut to MLflow's 6000-character limit; keys that look
    like credentials (secret, password, token, access key, credential, api
    key) get ``***`` so that logging a whole config never leaks one.
    Dataclasses and OmegaConf containers flatten like dicts and lists.
    """
    try:  # OmegaConf containers: resolve interpolations first.
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(d, (DictConfig, ListConfig)):
            d = OmegaConf.to_container(d, resolve=True)
    except ImportError:
        pass
    out: dict[str, str] = {}
    for key, value in _leaves(d, prefix.rstrip(".")):
        text = REDACTED if looks_secret(key) else str(value)
        out[key] = text[:MAX_PARAM_VALUE_LENGTH]
    return out


# --- ranks -----------------------------------------------------------------


def is_rank_zero() -> bool:
    """True unless this process is a non-zero rank of a distributed job.

    Looks at a Ray Train worker's world rank first, then ``RANK`` (torchrun,
    DeepSpeed). Ray Train is consulted only if already imported: a worker
    has imported it, and a plain script should not pay for the import.
    """
    if "ray.train" in sys.modules:
        try:
            import ray.train

            return ray.train.get_context().get_world_rank() == 0
        except Exception:  # not inside a Ray Train worker
            pass
    rank = os.environ.get("RANK", "").strip()
    return not rank or rank == "0"


# --- runs ------------------------------------------------------------------


def _quiet_mlflow() -> None:
    """MLflow and its SQLite migrations (alembic) log at INFO on every start; keep warnings only."""
    for name in ("mlflow", "alembic"):
        log = logging.getLogger(name)
        if log.level == logging.NOTSET or log.level < logging.WARNING:
            log.setLevel(logging.WARNING)


class TrackedRun:
    """One MLflow run, logged through an explicit client."""

    def __init__(self, client, run_id: str):
        self._client, self.run_id = client, run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def log_params(self, params: Mapping) -> None:
        from mlflow.entities import Param

        flat = flatten_params(params)
        if flat:
            self._client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dict(self, data: Mapping | list, artifact_file: str) -> None:
        # Round-trip through JSON so numpy scalars and paths serialise.
        plain = json.loads(json.dumps(data, default=str))
        self._client.log_dict(self.run_id, plain, artifact_file)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(local_path), artifact_path)


def attach(run_id: str, uri: str) -> TrackedRun:
    """A run another process created (the driver of a training job), for logging from a worker."""
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()
    return TrackedRun(MlflowClient(tracking_uri=uri), run_id)


def metric_history(run_id: str, uri: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run, in step order: a loss curve to print or compare."""
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)]


class NoOpRun:
    """What non-zero ranks get: same methods, nothing logged, ``run_id`` None."""

    run_id = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: Mapping) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_dict(self, data: Mapping | list, artifact_file: str) -> None:
        pass

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    db = _sqlite_path(uri)
    if db is not None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"
        location = (db.parent / "mlartifacts" / slug).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another worker created it between our lookup and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def run(
    experiment: str,
    run_name: str | None = None,
    params: Mapping | None = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> Iterator[TrackedRun | NoOpRun]:
    """An MLflow run for the ``with`` block: FINISHED on success, FAILED (or KILLED) on error.

    ``params`` are flattened with ``flatten_params``; ``uri`` defaults to
    ``tracking_uri()``. On non-zero ranks this yields a ``NoOpRun``.
    """
    if not is_rank_zero():
        yield NoOpRun()
        return
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()  # after the import: importing mlflow sets its logger to INFO

    uri = uri or tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    created = client.create_run(
        _experiment_id(client, experiment, uri),
        run_name=run_name,
        tags={k: str(v) for k, v in (tags or {}).items()},
    )
    tracked = TrackedRun(client, created.info.run_id)
    status = "FAILED"
    try:
        if params:
            tracked.log_params(params)
        yield tracked
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(tracked.run_id, status=status)
