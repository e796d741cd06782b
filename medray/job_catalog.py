"""The main jobs, one entry each: the file under ``jobs/``, the CLI command it runs and its config class.

``jobs/NAME.py`` is what ``ray job submit`` and KubeRay's ``RayJob`` start; it
runs the same CLI command as a laptop would, so there is one code path. The
catalog also lets a manifest's entrypoint be checked before a cluster is
paid for: the job file must exist and its config must load.
"""

from __future__ import annotations

import dataclasses
import importlib
import shlex
import sys
from pathlib import Path

from medray.errors import MedrayError

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = REPO_ROOT / "jobs"


@dataclasses.dataclass(frozen=True)
class Job:
    name: str  # jobs/<name>.py
    command: tuple[str, ...]  # `medray <command...> CONF [key=value ...]`
    config: str  # "module:Class" the command loads its YAML into
    example: str  # a config under conf/ that runs on the embedded default

    @property
    def path(self) -> Path:
        return JOBS_DIR / f"{self.name}.py"

    def config_class(self) -> type:
        module, _, cls = self.config.partition(":")
        return getattr(importlib.import_module(module), cls)

    def load_config(self, conf: str, overrides: list[str] | tuple[str, ...] = ()):
        """The job's config as the job itself would load it (unknown keys and bad types fail here)."""
        from medray.config import load_config

        return load_config(self.config_class(), conf, list(overrides))


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job("met_build", ("met", "build"), "medray.met.settings:MetBuildConfig", "conf/met/build.yaml"),
        Job("met_grow", ("met", "grow"), "medray.met.settings:MetGrowConfig", "conf/met/grow.yaml"),
        Job("data_quality", ("data", "quality-train"), "medray.data.quality:QualityConfig",
            "conf/data/quality.yaml"),
        Job("data_pipeline", ("data", "run"), "medray.data.settings:DataPipelineConfig",
            "conf/data/pipeline.yaml"),
        Job("train_cpt", ("train", "cpt"), "medray.train.cpt:CPTConfig", "conf/train/cpt_tiny.yaml"),
        Job("train_sft", ("train", "sft"), "medray.train.sft:SFTConfig", "conf/train/sft_tiny.yaml"),
        Job("train_medtrim", ("medtrim", "train"), "medray.medtrim.job_settings:MedTrimTrainConfig",
            "conf/medtrim/train_tiny.yaml"),
        Job("tune_medtrim", ("medtrim", "tune"), "medray.medtrim.tune_settings:MedTrimTuneConfig",
            "conf/medtrim/tune_tiny.yaml"),
        Job("synth", ("synth", "run"), "medray.synth.settings:SynthConfig", "conf/synth/tiny.yaml"),
    )
}


def run_job(name: str, argv: list[str] | None = None) -> None:
    """Run job ``name`` with ``argv`` (default: this process's arguments) through the CLI."""
    from medray.cli import main

    job = JOBS[name]
    sys.argv = ["medray", *job.command, *(sys.argv[1:] if argv is None else argv)]
    main()


def parse_entrypoint(entrypoint: str) -> tuple[Job, str, list[str]]:
    """``python jobs/NAME.py CONF [key=value ...]`` -> (job, CONF, overrides); a clear error otherwise."""
    words = shlex.split(entrypoint)
    scripts = [i for i, w in enumerate(words) if w.startswith("jobs/") and w.endswith(".py")]
    if not scripts:
        raise MedrayError(f"entrypoint {entrypoint!r} runs no jobs/NAME.py script")
    i = scripts[0]
    name = Path(words[i]).stem
    if name not in JOBS:
        raise MedrayError(f"entrypoint {entrypoint!r}: no job named {name!r} (known: {', '.join(JOBS)})")
    args = words[i + 1:]
    if not args or "=" in args[0]:
        raise MedrayError(f"entrypoint {entrypoint!r}: the job's config file must follow {words[i]}")
    return JOBS[name], args[0], args[1:]
