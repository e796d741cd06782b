"""Session-wide real components for the suite: Ray, S3, MLflow, shared data.

Each starts once per session, on loopback, and is stopped (and the
environment restored) at the end. Nothing is mocked: a test that passes here
talks to the same kind of endpoint as production, only smaller.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medray.met.matcher import Matcher
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_env(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (or, for None, unset) variables; returns the previous values for ``_set_env`` to restore."""
    previous = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return previous


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- S3 ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    region: str
    access_key: str
    secret_key: str

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *(p.strip("/") for p in parts)])

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 HTTP endpoint (moto) on loopback with one bucket; AWS_* point at it.

    The variables are the standard ones, so boto3, ``medray.storage`` and
    Ray workers started afterwards all reach it without extra arguments.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # Unique per session, so a scan of logs, outputs and MLflow for them cannot hit anything else.
    access_key = "AKIA" + secrets.token_hex(8).upper()
    info = S3Server(endpoint, "medray-test", "us-east-1", access_key, secrets.token_urlsafe(30))
    previous = _set_env(
        {
            "MEDRAY_S3_ENDPOINT": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": info.access_key,
            "AWS_SECRET_ACCESS_KEY": info.secret_key,
            "AWS_SESSION_TOKEN": None,
            "AWS_REGION": info.region,
            "AWS_DEFAULT_REGION": info.region,
            "AWS_PROFILE": None,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    try:
        info.client().create_bucket(Bucket=info.bucket)
        yield info
    finally:
        _set_env(previous)
        server.stop()


@pytest.fixture
def s3_prefix(s3_server: S3Server) -> str:
    """A fresh ``s3://`` prefix per test, so tests never see each other's objects."""
    return s3_server.uri(f"t-{uuid.uuid4().hex[:10]}")


# --- Ray -----------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_local(s3_server: S3Server) -> Iterator[dict]:
    """One local Ray cluster per session (2 CPUs, ~200 MB object store).

    Started after ``s3_server`` so that its workers inherit the S3 settings,
    as the nodes of a real cluster would have them.
    """
    from medray.runtime import init_ray, shutdown_ray

    info = init_ray(num_cpus=2, object_store_memory=200 * 1024 * 1024)
    try:
        yield info
    finally:
        shutdown_ray()


@dataclasses.dataclass(frozen=True)
class RayTokenCluster:
    address: str  # GCS address, for ray.init / init_ray
    dashboard_url: str  # for `ray job submit --address`
    token: str = dataclasses.field(repr=False)  # never in a failure report
    temp_dir: Path = Path()

    def client_env(self, token: str | None = None, home: Path | None = None) -> dict[str, str]:
        """Environment for a client process: the given token (default: the right one) and no other.

        ``HOME`` is replaced so that a ``~/.ray/auth_token`` left by another
        cluster is not picked up instead.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["HOME"] = str(home or self.temp_dir / "client-home")
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        env["RAY_AUTH_TOKEN"] = self.token if token is None else token
        return env


def _stop_ray_processes(marker: str) -> None:
    """Stop the processes of one `ray start` (found by its temp dir), never `ray stop`."""
    import psutil

    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                procs.append(proc)
                procs.extend(proc.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    procs = [p for p in {p.pid: p for p in procs}.values() if p.pid != os.getpid()]
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=3)  # gcs_server may ignore SIGTERM
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="session")
def ray_token_cluster(tmp_path_factory, s3_server) -> Iterator[RayTokenCluster]:
    """A `ray start --head` cluster on 127.0.0.1 with token authentication.

    The token goes to the head through ``RAY_AUTH_TOKEN`` (Ray's first
    source), so no ``~/.ray/auth_token`` is written. All ports are picked free
    so that it can run beside ``ray_local`` or a developer's own cluster.
    Like a real node, it has the S3 credentials in its environment (after
    ``s3_server``) and the project's Python first on PATH, so a submitted
    ``python jobs/...`` finds medray.
    """
    temp_dir = Path(f"/tmp/mrtok-{uuid.uuid4().hex[:8]}")  # short: unix socket paths
    token = secrets.token_hex(32)
    port, dash_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # fmt: off
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dash_port),
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--temp-dir", str(temp_dir),
    ]
    # fmt: on
    log = tmp_path_factory.mktemp("ray-token") / "ray-start.log"
    with open(log, "wb") as out:
        rc = subprocess.call(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180)
    try:
        if rc != 0:
            pytest.fail(f"`ray start --head` failed (rc={rc}):\n{_log_tail(log)}")
        yield RayTokenCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash_port}", token, temp_dir)
    finally:
        _stop_ray_processes(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


# --- MLflow --------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """`mlflow server` on a SQLite store at 127.0.0.1:FREE; yields its http URI.

    Artifacts are served by the server (``mlflow-artifacts:``) from a temp
    dir. The job-execution workers MLflow 3 starts by default are turned off:
    the suite does not use them and they cost a dozen processes.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    # fmt: off
    cmd = [
        str(VENV_BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    # fmt: on
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited (rc={proc.returncode}):\n{_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not answer {uri}/health in 120 s:\n{_log_tail(log)}"
                )
            time.sleep(0.5)
        yield uri
    finally:
        # The server runs uvicorn in a child process: stop the whole group we started.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- shared data ---------------------------------------------------------


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo: ontologies, lexicons, CRDs too large to vendor."""
    path = (REPO_ROOT.parent / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"../shared/data not found: {path} (clone the shared data beside the repo)")
    return path


# ---- a tiny Medical Entity Tree, for every test folder -------------------------------------------

def tiny_nodes() -> list[Node]:
    """Root, four axes and a handful of findings, anatomy and one disease branch.

    symptom: Pleural effusion (SCT code, synonyms incl. "effusion(s)"), Pneumothorax,
    Cardiomegaly (absent form "heart size normal") and Scoliosis;
    disease: D:resp > D:pleura > {D:j90, D:j93}; anatomy: Lung.
    """
    nodes = [Node(ROOT_ID, None, None, 0, "Medical Entity Tree", sources=["medray"])]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a.title(), sources=["medray"]) for a in AXES]
    nodes += [
        Node(
            "T:pe",
            "MET:symptom",
            "symptom",
            2,
            "Pleural effusion",
            ["effusion", "effusions", "pleural effusions", "Fluid around lungs"],
            ["T:pe", "SCT:60046008"],
            ["tiny"],
        ),
        Node(
            "T:ptx",
            "MET:symptom",
            "symptom",
            2,
            "Pneumothorax",
            ["pneumothoraces"],
            ["T:ptx"],
            ["tiny"],
        ),
        Node(
            "T:cm",
            "MET:symptom",
            "symptom",
            2,
            "Cardiomegaly",
            ["enlarged heart"],
            ["T:cm"],
            ["tiny"],
            absent_forms=["heart size normal"],
        ),
        Node("T:scol", "MET:symptom", "symptom", 2, "Scoliosis", [], ["T:scol"], ["tiny"]),
        Node("T:lung", "MET:anatomy", "anatomy", 2, "Lung", ["lungs"], ["T:lung"], ["tiny"]),
        Node(
            "D:resp", "MET:disease", "disease", 2, "Respiratory disease", [], ["D:resp"], ["tiny"]
        ),
        Node(
            "D:pleura", "D:resp", "disease", 3, "Disease of the pleura", [], ["D:pleura"], ["tiny"]
        ),
        Node(
            "D:j90",
            "D:pleura",
            "disease",
            4,
            "Pleural effusion, not elsewhere classified",
            ["Encysted pleurisy"],
            ["D:j90", "ICD10CM:J90"],
            ["tiny"],
        ),
        Node(
            "D:j93", "D:pleura", "disease", 4, "Spontaneous pneumothorax", [], ["D:j93"], ["tiny"]
        ),
    ]
    return nodes


@pytest.fixture(scope="session")
def tiny_tree() -> Tree:
    return Tree.from_nodes(tiny_nodes())


@pytest.fixture(scope="session")
def tiny_matcher(tiny_tree: Tree) -> Matcher:
    return Matcher(tiny_tree)
