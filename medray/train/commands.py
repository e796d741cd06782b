"""`medray train ...`: continual pretraining and SFT / mid-training."""

from __future__ import annotations

import os
from typing import Optional

import typer

from medray import console as out

train_app = typer.Typer(help="Training on Ray Train: continual pretraining, SFT.", no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")
Overrides = typer.Argument(None, help="key=value overrides")


@train_app.command("cpt")
def train_cpt(conf: str = typer.Argument(..., help="YAML config, e.g. conf/train/cpt_tiny.yaml"),
              overrides: Optional[list[str]] = Overrides,  # noqa: UP045
              as_json: bool = JsonOpt) -> None:
    """Continual pretraining on packed shards (DDP or DeepSpeed ZeRO), checkpointed and resumable."""
    from medray.config import load_config
    from medray.train.cpt import CPTConfig, CPTTask
    from medray.train.loop import run_training

    cfg = load_config(CPTConfig, conf, overrides or [])
    with out.stdout_to_stderr(as_json):
        summary = run_training(cfg, CPTTask(), progress=(lambda msg: None) if as_json else out.status)
    if as_json:
        return out.print_json(summary)
    out.key_values("Continual pretraining", summary)


@train_app.command("sft")
def train_sft(conf: str = typer.Argument(..., help="YAML config, e.g. conf/train/sft_tiny.yaml"),
              overrides: Optional[list[str]] = Overrides,  # noqa: UP045
              as_json: bool = JsonOpt) -> None:
    """Mid-training / SFT on chat and structured-CoT data (text or images), checkpointed and resumable."""
    from medray.train.sft import train_sft_command

    train_sft_command(conf, overrides, as_json)


@train_app.command("sft-generate")
def train_sft_generate(out_dir: str = typer.Argument("out/sft", help="Folder for medical.jsonl, reasoning.jsonl, general.jsonl"),
                       tree: str = typer.Option(os.environ.get("MEDRAY_TREE", "out/met/tree.parquet"), "--tree",
                                                help="Tree parquet (env MEDRAY_TREE)."),
                       seed: int = typer.Option(0, "--seed"),
                       as_json: bool = JsonOpt) -> None:
    """Generated SFT sources (HPO definition Q&A, structured-CoT questions on the tree, general replay),
    with planted malformed rows listed in ground_truth.json: the data conf/train/sft_tiny.yaml reads."""
    from medray.met.tree import Tree
    from medray.train.sft_synthetic import generate_sft_sources

    result = generate_sft_sources(Tree.load(tree), out_dir, seed=seed)
    if as_json:
        return out.print_json(result)
    out.table("SFT sources", ("source", "rows", "path"), ((k, result["rows"][k], p) for k, p in result["paths"].items()))
