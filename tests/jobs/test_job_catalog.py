"""jobs/: one thin file per catalog job, each running the same CLI command; entrypoints checked before submission."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from medray.errors import ConfigError, MedrayError
from medray.job_catalog import JOBS, JOBS_DIR, parse_entrypoint


def test_every_job_file_is_in_the_catalog_and_every_catalog_job_has_a_file():
    files = {p.stem for p in JOBS_DIR.glob("*.py")}
    assert files == set(JOBS)


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_file_runs_its_own_catalog_entry_and_nothing_else(name):
    """Thin: an import and one call, so the job and the CLI cannot drift apart."""
    tree = ast.parse(JOBS[name].path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert [(c.func.id, [a.value for a in c.args]) for c in calls] == [("run_job", [name])]


@pytest.mark.parametrize("name", sorted(JOBS))
def test_each_jobs_example_config_loads(name):
    job = JOBS[name]
    cfg = job.load_config(job.example)
    assert type(cfg) is job.config_class()


def test_a_job_file_is_the_cli_command():
    """`python jobs/met_grow.py --help` is `medray met grow --help`."""
    proc = subprocess.run([sys.executable, "jobs/met_grow.py", "--help"], cwd=JOBS_DIR.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage: medray met grow" in proc.stdout


def test_parse_entrypoint_returns_job_config_and_overrides():
    job, conf, overrides = parse_entrypoint(
        "python jobs/data_pipeline.py conf/data/pipeline.yaml 'input=[s3://b/raw/]' out=s3://b/shards")
    assert job.name == "data_pipeline"
    assert conf == "conf/data/pipeline.yaml"
    assert overrides == ["input=[s3://b/raw/]", "out=s3://b/shards"]
    cfg = job.load_config(conf, overrides)
    assert cfg.out == "s3://b/shards" and cfg.input == ["s3://b/raw/"]


@pytest.mark.parametrize(("entrypoint", "message"), [
    ("python train.py conf/x.yaml", "runs no jobs/NAME.py script"),
    ("python jobs/nope.py conf/met/build.yaml", "no job named 'nope'"),
    ("python jobs/met_build.py out=s3://b/t.parquet", "the job's config file must follow jobs/met_build.py"),
])
def test_parse_entrypoint_names_what_is_wrong(entrypoint, message):
    with pytest.raises(MedrayError, match=message):
        parse_entrypoint(entrypoint)


def test_a_bad_override_in_an_entrypoint_names_the_key():
    job, conf, overrides = parse_entrypoint("python jobs/met_build.py conf/met/build.yaml sourcez.hpo.enabled=false")
    with pytest.raises(ConfigError, match="sourcez"):
        job.load_config(conf, overrides)


def _readme_entrypoints() -> list[str]:
    import re

    text = (JOBS_DIR.parent / "README.md").read_text().replace("\\\n", " ")
    return [m.group(0) for m in re.finditer(r"python jobs/[a-z_]+\.py[^\n`]*", text)]


def test_every_job_command_in_the_readme_loads_its_config():
    """The README's cluster commands are copied by users: each must parse and load (bucket URIs need no S3)."""
    entrypoints = _readme_entrypoints()
    assert {parse_entrypoint(e)[0].name for e in entrypoints} == set(JOBS)
    for entrypoint in entrypoints:
        job, conf, overrides = parse_entrypoint(entrypoint)
        job.load_config(conf, overrides)
