"""`medray medtrim ...`: MedTrim image-report alignment and its sweeps."""

from __future__ import annotations

from typing import Optional

import typer

medtrim_app = typer.Typer(help="MedTrim: meta-entity triplet alignment of images and reports, Ray Tune sweeps.",
                          no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")
Overrides = typer.Argument(None, help="key=value overrides")


@medtrim_app.callback()
def medtrim() -> None:
    """MedTrim: meta-entity triplet alignment of images and reports, Ray Tune sweeps."""


@medtrim_app.command("train")
def train(conf: str = typer.Argument(..., help="YAML config, e.g. conf/medtrim/train_tiny.yaml"),
          overrides: Optional[list[str]] = Overrides,  # noqa: UP045
          as_json: bool = JsonOpt) -> None:
    """MedTrim triplet alignment (or the InfoNCE baseline) on Ray Train (DDP), checkpointed, resumable, in MLflow."""
    from medray.medtrim.train import train_medtrim_command

    train_medtrim_command(conf, overrides, as_json)


@medtrim_app.command("evaluate")
def evaluate(model: str = typer.Argument(..., help="A saved MedTrim model folder (a run's export), local or s3://"),
             pairs: str = typer.Argument(..., help="Image-report pairs in the MIMIC-CXR layout (e.g. out/phantom)"),
             split: str = typer.Option("test", "--split", help="Split to evaluate (train, validate, test)."),
             as_json: bool = JsonOpt) -> None:
    """Retrieval Precision@R (image to text, text to image; disease and fine match) and zero-shot ACC/AUC/F1."""
    from medray import console as out
    from medray.medtrim.evaluate import evaluate_model, print_evaluation
    from medray.medtrim.model import MedTrimModel
    from medray.mm.pairs import read_pairs

    result = evaluate_model(MedTrimModel.load(model), read_pairs(pairs)[0], split=split)
    if as_json:
        return out.print_json(result)
    print_evaluation(result, title=f"MedTrim model {model} on {split}")


@medtrim_app.command("tune")
def tune(conf: str = typer.Argument(..., help="YAML config, e.g. conf/medtrim/tune_tiny.yaml"),
         overrides: Optional[list[str]] = Overrides,  # noqa: UP045
         as_json: bool = JsonOpt) -> None:
    """Sweep alpha, tau_min/tau_max, g0..g2 and eta with ASHA; every trial an MLflow run, the best config written out."""
    from medray.medtrim.tune import tune_command

    tune_command(conf, overrides, as_json)
