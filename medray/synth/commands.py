"""`medray synth ...`: the multimodal data engine and knowledge-aware synthesis."""

from __future__ import annotations

from typing import Optional

import typer

synth_app = typer.Typer(help="Synthesis: retrieval, filtering, captions, VQA, multi-hop QA, reject sampling.",
                        no_args_is_help=True)


@synth_app.callback()
def synth() -> None:
    """Synthesis: retrieval, filtering, captions, VQA, multi-hop QA, reject sampling."""


@synth_app.command("run")
def run(conf: str = typer.Argument(..., help="YAML config, e.g. conf/synth/tiny.yaml"),
        overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),  # noqa: UP045
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Pairs + tree -> anchored, filtered pairs -> captions, VQA, multi-hop QA -> validated SFT data (resumable)."""
    from medray import console as out
    from medray.config import load_config
    from medray.synth.run import run_synth
    from medray.synth.settings import SynthConfig
    from medray.synth.summary import print_report

    cfg = load_config(SynthConfig, conf, overrides or [])
    out.run_and_print(lambda progress: run_synth(cfg, progress=progress), print_report, as_json)


@synth_app.command("tiny-model")
def tiny_model(out_dir: str = typer.Argument(..., help="Folder to write (local or s3://)"),
               seed: int = typer.Option(0, help="Seed of the weights and the tokenizer's corpus"),
               train_steps: int = typer.Option(60, help="Steps on report-like lines (0: random weights)")) -> None:
    """A tiny causal LM with its tokenizer and chat template, built from config (no hub): for tests and the demo."""
    from medray import console as out
    from medray.synth.tiny_model import write_tiny_causal_lm

    out.key_values("Tiny model", {"path": write_tiny_causal_lm(out_dir, seed=seed, train_steps=train_steps)})


@synth_app.command("warm-up")
def warm_up(conf: str = typer.Argument(..., help="The synthesis YAML config whose engine.model is taught"),
            out_dir: str = typer.Argument(..., help="Folder for the taught model (local or s3://)"),
            overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),  # noqa: UP045
            split: str = typer.Option("train", help="Pairs whose tasks teach the formats (keep it apart from the run's)"),
            max_pairs: int = typer.Option(200, help="Pairs of that split at most"),
            steps: int = typer.Option(300, help="Training steps (8 tasks each)")) -> None:
    """Teach a small model the output formats on one split's tasks and their reference outputs."""
    from medray import console as out
    from medray.config import load_config
    from medray.synth.settings import SynthConfig
    from medray.synth.warm_up import teach

    cfg = load_config(SynthConfig, conf, overrides or [])
    out.key_values("Warm-up", teach(cfg, out_dir, split=split, max_pairs=max_pairs, steps=steps, progress=out.status))
