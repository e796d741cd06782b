"""`medray data ...` and `medray tokenizer ...`: the text data engine's commands."""

from __future__ import annotations

from typing import Optional

import typer

from medray import console as out

data_app = typer.Typer(help="The text data engine: generate, clean, dedup, tag, sample, pack.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Tokenizers: train one locally (no hub).", no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")
Overrides = typer.Argument(None, help="key=value overrides")


def _progress(as_json: bool):
    return (lambda msg: None) if as_json else out.status


def print_stage_table(stages: dict[str, dict]) -> None:
    rows = []
    for name, t in stages.items():
        dropped = ", ".join(f"{reason} {n}" for reason, n in t["dropped"].items()) or "-"
        rate = t.get("tokens_per_s_per_core")
        rows.append((name, t["in"], t["kept"], sum(t["dropped"].values()), dropped,
                     f"{rate / 1e6:.2f}M" if rate else "-"))
    out.table("Stages (in = kept + dropped)", ("stage", "in", "kept", "dropped", "reasons", "tokens/s/core"), rows)


def print_sampling(sampling: dict | None) -> None:
    if not sampling:
        return
    before, after = sampling["before"], sampling["after"]
    keys = [k for k in before if isinstance(before[k], (int, float))]
    out.table("Tree-guided sampling", ("measure", "before", "after"),
              [(k, _fmt(before[k]), _fmt(after.get(k))) for k in keys])
    backfill = sampling.get("backfill", [])
    if backfill:
        out.table(f"Back-fill: {len(backfill)} sparse nodes (first 10)", ("node", "name", "axis", "docs"),
                  [(b.get("node_id"), b.get("name", ""), b.get("axis", ""), b.get("docs_after", b.get("docs", "")))
                   for b in backfill[:10]])


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@data_app.command("run")
def data_run(conf: str = typer.Argument(..., help="YAML config, e.g. conf/data/pipeline.yaml"),
             overrides: Optional[list[str]] = Overrides,  # noqa: UP045
             as_json: bool = JsonOpt) -> None:
    """Run (or resume) the pipeline: read, exact dedup, rules, quality, near-dup, tag, sample, pack."""
    from medray.config import load_config
    from medray.data.pipeline import run_pipeline
    from medray.data.settings import DataPipelineConfig

    cfg = load_config(DataPipelineConfig, conf, overrides or [])
    with out.stdout_to_stderr(as_json):
        report = run_pipeline(cfg, progress=_progress(as_json))
    if as_json:
        return out.print_json(report)
    print_stage_table(report["stages"])
    print_sampling(report.get("sampling"))
    out.key_values("Outputs", {**report["outputs"], "manifest": report["manifest"], "seconds": report["seconds"],
                               "mlflow run": report.get("mlflow_run_id", "-")})


@tokenizer_app.command("train")
def tokenizer_train_cmd(corpus: list[str] = typer.Argument(..., help="Corpus files or folders (.txt, .jsonl[.gz|.zst], .parquet), local or s3://"),
                        out_dir: str = typer.Option("out/tokenizer", "--out", help="Where the tokenizer is saved (local or s3://)"),
                        vocab_size: int = typer.Option(32000, help="Vocabulary size, special tokens included"),
                        min_frequency: int = typer.Option(2, help="Fewest occurrences for a merge"),
                        text_field: str = typer.Option("text", help="Text field of JSONL / parquet inputs"),
                        sample_rate: float = typer.Option(1.0, help="Share of documents to train on (hash-sampled)"),
                        max_docs: Optional[int] = typer.Option(None, help="Train on at most this many documents"),  # noqa: UP045
                        seed: int = typer.Option(0),
                        as_json: bool = JsonOpt) -> None:
    """Train a byte-level BPE tokenizer that `transformers.AutoTokenizer` loads offline."""
    from medray.data.tokenizer import tokenizer_train

    report = tokenizer_train(list(corpus), out_dir, vocab_size, min_frequency=min_frequency, text_field=text_field,
                             sample_rate=sample_rate, max_docs=max_docs, seed=seed)
    if as_json:
        return out.print_json(report)
    out.key_values("Tokenizer", {k: v for k, v in report.items() if k != "special_tokens"})


@data_app.command("quality-train")
def quality_train_cmd(conf: str = typer.Argument(..., help="YAML config, e.g. conf/data/quality.yaml"),
                      overrides: Optional[list[str]] = Overrides,  # noqa: UP045
                      as_json: bool = JsonOpt) -> None:
    """Train the fastText quality classifier by bootstrap: seed set, score, judge the borderline, retrain."""
    from medray.config import load_config
    from medray.data.quality import QualityConfig
    from medray.data.quality_bootstrap import quality_train

    report = quality_train(load_config(QualityConfig, conf, overrides or []))
    if as_json:
        return out.print_json(report)
    rows = [(r.get("round"), r.get("train_size"), r.get("borderline"), r.get("judge_calls"), _fmt(r.get("heldout_accuracy")))
            for r in report.get("rounds", [])]
    out.table("Bootstrap rounds", ("round", "train", "borderline", "judged", "held-out accuracy"), rows)
    out.key_values("Quality model", {"model": report.get("model_path"), "held-out accuracy": _fmt(report.get("heldout_accuracy"))})


@data_app.command("generate")
def data_generate(out_dir: str = typer.Argument(..., help="Folder for the JSONL files and ground_truth.json (local or s3://)"),
                  tree: str = typer.Option("out/met/tree.parquet", "--tree", help="Tree whose names the documents mention"),
                  docs: int = typer.Option(2000, help="Records to write"),
                  size_mb: Optional[float] = typer.Option(None, help="Write about this many MB instead"),  # noqa: UP045
                  files: int = typer.Option(4, help="Files (.jsonl, .jsonl.gz, .jsonl.zst in turn)"),
                  plant: bool = typer.Option(True, help="Plant duplicates, junk, PII and malformed lines"),
                  seed: int = typer.Option(0),
                  as_json: bool = JsonOpt) -> None:
    """Generate a medical corpus with planted defects and its ground truth (demo, tests, benchmarks)."""
    from medray.data.synthetic import generate_corpus
    from medray.met.tree import Tree

    truth = generate_corpus(Tree.load(tree), out_dir, n_docs=docs, size_mb=size_mb, files=files, plant=plant, seed=seed)
    if as_json:
        return out.print_json(truth["counts"])
    out.key_values(f"Corpus in {out_dir}", {k: v for k, v in truth["counts"].items() if not isinstance(v, dict)})
    out.table("Planted, by expected reason", ("reason", "records"), sorted(truth["counts"]["by_reason"].items()))
