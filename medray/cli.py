"""`medray` command: one sub-command group per package folder."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from medray import console as out
from medray.errors import MedrayError

app = typer.Typer(help="medray: entity-centric data engine and training stack for medical multimodal LLMs.",
                  no_args_is_help=True, add_completion=False)
met_app = typer.Typer(help="The Medical Entity Tree: build, inspect, match, grow, measure coverage.",
                      no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: print JSON with the figures and their baseline.", no_args_is_help=True)
app.add_typer(met_app, name="met")
app.add_typer(bench_app, name="bench")


def _add_bench_train() -> None:
    from medray.bench.train import bench_train_command

    bench_app.command("train")(bench_train_command)


_add_bench_train()


def _add_bench_synth() -> None:
    from medray.bench.synth import bench_synth_command

    bench_app.command("synth")(bench_synth_command)


_add_bench_synth()


def _add_data_commands() -> None:
    from medray.data.commands import data_app, tokenizer_app
    from medray.deploy.commands import deploy_app
    from medray.medtrim.commands import medtrim_app
    from medray.mm.commands import mm_app
    from medray.synth.commands import synth_app
    from medray.train.commands import train_app

    app.add_typer(data_app, name="data")
    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(train_app, name="train")
    app.add_typer(mm_app, name="mm")
    app.add_typer(medtrim_app, name="medtrim")
    app.add_typer(synth_app, name="synth")
    app.add_typer(deploy_app, name="deploy")


_add_data_commands()

DEFAULT_TREE = os.environ.get("MEDRAY_TREE", "out/met/tree.parquet")
TreeOpt = typer.Option(DEFAULT_TREE, "--tree", help="Tree parquet (env MEDRAY_TREE).")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _load_tree(path: str):
    from medray.met.tree import Tree
    from medray.storage import exists

    if not exists(path):
        raise MedrayError(f"{path}: no tree here; build one with `medray met build conf/met/quickstart.yaml`")
    return Tree.load(path)


def _progress(as_json: bool):
    return (lambda msg: None) if as_json else out.status


# ---- met ------------------------------------------------------------------------------------
@met_app.command("build")
def met_build(conf: str = typer.Argument(..., help="YAML config, e.g. conf/met/build.yaml"),
              overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),  # noqa: UP045
              as_json: bool = JsonOpt) -> None:
    """Build the tree from its sources, merge concepts, save parquet + summary + views."""
    from medray.config import load_config
    from medray.met.jobs import run_build
    from medray.met.settings import MetBuildConfig

    cfg = load_config(MetBuildConfig, conf, overrides or [])
    with out.stdout_to_stderr(as_json):
        result = run_build(cfg, progress=_progress(as_json))
    if as_json:
        return out.print_json(result)
    _print_summary(result["summary"])
    out.table("Merged concepts", ("source -> owner (how)", "nodes"), result["report"]["merged"].items())
    out.key_values("Outputs", {"tree": result["out"], "views": ", ".join(result["views"]) or "-",
                               "seconds": result["seconds"], "mlflow run": result.get("mlflow_run_id", "-")})


def _print_summary(summary: dict) -> None:
    out.key_values("Tree", {k: summary[k] for k in ("nodes", "synonyms", "codes", "max_level", "grown")})
    axes = list(summary["per_axis"])
    levels = sorted({int(lvl) for per in summary["per_axis_level"].values() for lvl in per})
    rows = [[f"level {lvl}", *(summary["per_axis_level"][a].get(str(lvl), "") for a in axes)] for lvl in levels]
    rows.append(["all", *(summary["per_axis"][a] for a in axes)])
    out.table("Nodes per level and axis", ("", *axes), rows)
    out.table("Nodes per source", ("source", "nodes"), summary["per_source"].items())


@met_app.command("stats")
def met_stats(tree: str = TreeOpt, as_json: bool = JsonOpt) -> None:
    """Size of the tree per axis, level and source."""
    summary = _load_tree(tree).summary()
    if as_json:
        return out.print_json(summary)
    _print_summary(summary)


@met_app.command("show")
def met_show(ref: str = typer.Argument(..., help="Node id, code (J90, ICD10CM:J90, HP:0002202) or name"),
             tree: str = TreeOpt, children: int = typer.Option(20, help="Children to list"),
             as_json: bool = JsonOpt) -> None:
    """One node: path from the root, codes, synonyms, children."""
    t = _load_tree(tree)
    node_id = (ref if ref in t else None) or t.by_code(ref) or t.by_code(f"ICD10CM:{ref}") or t.resolve(ref)
    node = t.node(node_id)
    path = [t.node(a).name for a in reversed(t.ancestors(node_id))]
    kids = t.children(node_id)
    data = {**node.as_row(), "path": path, "children": [{"node_id": k, "name": t.node(k).name} for k in kids[:children]],
            "n_children": len(kids), "siblings": len(t.siblings(node_id)), "subtree": len(t.subtree(node_id))}
    if as_json:
        return out.print_json(data)
    out.key_values(node.name, {"node_id": node.node_id, "axis": node.axis, "level": node.level,
                               "path": " > ".join(path), "codes": ", ".join(node.codes),
                               "synonyms": "; ".join(node.synonyms), "absent forms": "; ".join(node.absent_forms),
                               "sources": ", ".join(node.sources), "provenance": node.provenance or "-",
                               "children": len(kids), "subtree": data["subtree"]})
    if kids:
        out.table("Children", ("node_id", "name"), ((k["node_id"], k["name"]) for k in data["children"]))


@met_app.command("match")
def met_match(text: Optional[str] = typer.Argument(None, help="Text to match (or --file)"),  # noqa: UP045
              file: Optional[str] = typer.Option(None, "--file", help="Read the text from a file"),  # noqa: UP045
              tree: str = TreeOpt, labels: bool = typer.Option(False, help="Also CheXpert observation labels"),
              as_json: bool = JsonOpt) -> None:
    """Entities in a text: node, span, surface and assertion (present / absent / uncertain)."""
    from medray.met.matcher import Matcher

    if (text is None) == (file is None):
        raise MedrayError("give the text as an argument or with --file, not both")
    if file is not None:
        from medray.storage import read_text

        text = read_text(file)
    t = _load_tree(tree)
    hits = Matcher(t).match(text)
    for h in hits:
        h["name"] = t.node(h["node_id"]).name
    result: dict = {"hits": hits}
    if labels:
        from medray.met.labels import observation_labels

        result["labels"] = observation_labels(hits, t)
    if as_json:
        return out.print_json(result)
    out.table(f"{len(hits)} entities", ("span", "surface", "assertion", "node", "name"),
              ((f"{h['start']}-{h['end']}", h["surface"], h["assertion"], h["node_id"], h["name"]) for h in hits))
    if labels:
        out.table("Observation labels (1 present, -1 uncertain, 0 absent)", ("observation", "label"),
                  ((k, "" if v is None else v) for k, v in result["labels"].items()))


@met_app.command("grow")
def met_grow(conf: str = typer.Argument(..., help="YAML config, e.g. conf/met/grow.yaml"),
             overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),  # noqa: UP045
             as_json: bool = JsonOpt) -> None:
    """Grow the tree from a text corpus: count candidates on Ray, attach by embedding similarity."""
    from medray.config import load_config
    from medray.met.jobs import run_grow
    from medray.met.settings import MetGrowConfig

    cfg = load_config(MetGrowConfig, conf, overrides or [])
    with out.stdout_to_stderr(as_json):
        result = run_grow(cfg, progress=_progress(as_json))
    if as_json:
        return out.print_json(result)
    report = result["report"]
    out.key_values("Growth", {"tree": result["tree"], "out": result["out"], "nodes before": result["nodes_before"],
                              "nodes after": result["nodes_after"], "seconds": result["seconds"]})
    out.table("Candidates", ("outcome", "count"), ((k, v) for k, v in report.items() if isinstance(v, int)))
    examples = report["examples"].get("attached", [])
    if examples:
        out.table("Attached (examples)", ("term", "parent", "score"),
                  ((e.get("term"), e.get("parent"), e.get("score")) for e in examples))


@met_app.command("coverage")
def met_coverage(entities: Optional[str] = typer.Option(None, "--entities", help="Benchmark entities: one per line, or TSV term<TAB>axis"),  # noqa: UP045
                 corpus: Optional[str] = typer.Option(None, "--corpus", help="Text corpus (.txt/.jsonl/.parquet) to tag for node frequencies"),  # noqa: UP045
                 tree: str = TreeOpt, max_tree_terms: Optional[int] = typer.Option(None, help="Sample this many tree names per axis"),  # noqa: UP045
                 as_json: bool = JsonOpt) -> None:
    """AMCS coverage against an entity list, and node frequencies from a tagged corpus."""
    from medray.met.coverage_job import corpus_frequencies, read_entities

    if entities is None and corpus is None:
        raise MedrayError("give --entities FILE, --corpus FILE, or both")
    t = _load_tree(tree)
    result: dict = {}
    if entities:
        from medray.met.coverage import coverage_report
        from medray.met.embed import get_embedder

        result["amcs"] = coverage_report(t, read_entities(entities), get_embedder(),
                                         max_tree_terms_per_axis=max_tree_terms)
    if corpus:
        result["frequencies"] = corpus_frequencies(t, corpus)
    if as_json:
        return out.print_json(result)
    if "amcs" in result:
        r = result["amcs"]
        out.key_values("AMCS", {"forward (benchmark -> tree)": r["forward"], "backward (tree -> benchmark)": r["backward"]})
        out.table("AMCS per axis", ("axis", "forward", "backward", "entities", "tree terms"),
                  ((a, v["forward"], v["backward"], v["entities"], v["tree_terms"]) for a, v in r["per_axis"].items()))
    if "frequencies" in result:
        f = result["frequencies"]
        out.key_values("Node frequencies", {k: v for k, v in f.items() if not isinstance(v, (dict, list))})


@met_app.command("render")
def met_render(tree: str = TreeOpt, out_prefix: Optional[str] = typer.Option(None, "--out", help="Path prefix (default: beside the tree)"),  # noqa: UP045
               max_nodes: int = typer.Option(60000, help="Nodes embedded in the HTML page")) -> None:
    """Write an HTML page (collapsible tree, search, sunburst) and a PNG summary."""
    from medray.met.render import render_html, render_png
    from medray.storage import strip_suffix

    t = _load_tree(tree)
    prefix = out_prefix or strip_suffix(tree)
    html = render_html(t, prefix + ".html", max_nodes=max_nodes)
    png = render_png(t, prefix + ".png")
    out.key_values("Views", {"html": html, "png": png})


# ---- bench ----------------------------------------------------------------------------------
@bench_app.command("met-match")
def bench_met_match(tree: str = TreeOpt, size_mb: float = typer.Option(50.0, help="Generated corpus size"),
                    synthetic: int = typer.Option(1_000_000, help="Entities in the synthetic tree (0: skip)"),
                    baseline_mb: float = typer.Option(2.0, help="Corpus slice the baseline runs on"),
                    baseline: str = typer.Option("auto", help="spacy | regex | ahocorasick | auto (spacy when installed, else regex)"),
                    seed: int = typer.Option(0)) -> None:
    """Matcher throughput (tokens/s/core) with assertions vs a baseline; automaton build time and memory."""
    from medray.bench.met_match import run_bench

    out.print_json(run_bench(_load_tree(tree), tree, size_mb=size_mb, synthetic=synthetic, baseline_mb=baseline_mb,
                             baseline=baseline, seed=seed, progress=out.status))


@bench_app.command("data")
def bench_data(tree: str = TreeOpt,
               sizes_mb: str = typer.Option("200,1000", "--sizes-mb", help="Two (or more) input sizes, comma-separated"),
               work: str = typer.Option("out/bench-data", help="Folder for the corpora and outputs"),
               neardup_mb: float = typer.Option(10.0, help="Slice for the near-dup vs datasketch comparison"),
               seed: int = typer.Option(0)) -> None:
    """Whole pipeline and each stage: tokens/s/core and peak memory at two sizes; near-dup vs datasketch."""
    from medray.bench.data import run_bench

    _load_tree(tree)
    sizes = [float(s) for s in sizes_mb.split(",") if s.strip()]
    out.print_json(run_bench(tree, sizes, work, seed=seed, neardup_mb=neardup_mb, progress=out.status))


@bench_app.command("medtrim")
def bench_medtrim(work: str = typer.Option("out/bench-medtrim", help="Folder for the phantoms, runs and sweeps"),
                  studies: int = typer.Option(600, help="Phantom studies (80/10/10 train/validate/test)"),
                  seeds: int = typer.Option(3, help="Training seeds; MedTrim and InfoNCE train once per seed"),
                  steps: int = typer.Option(300, help="Steps per training run (the demo's budget)"),
                  text: str = typer.Option("tiny", help="Text tower: tiny (from config) or minilm (all-MiniLM-L6-v2)"),
                  compare: bool = typer.Option(True, help="Run MedTrim beside InfoNCE"),
                  sweep: bool = typer.Option(True, help="Time an 8-trial ASHA sweep beside the same sweep without it"),
                  trials: int = typer.Option(8, help="Sweep trials")) -> None:
    """MedTrim vs InfoNCE Precision@R over seeds on held-out phantoms; the sweep vs its 15-minute target."""
    from medray.bench.medtrim import run_bench

    with out.stdout_to_stderr(True):
        report = run_bench(work, studies=studies, seeds=seeds, steps=steps, text=text, compare=compare, sweep=sweep,
                           trials=trials, progress=out.status)
    out.print_json(report)


@bench_app.command("neardup")
def bench_neardup(tree: str = TreeOpt, size_mb: float = typer.Option(20.0, help="Generated corpus size"), seed: int = typer.Option(0)) -> None:
    """MinHash + LSH throughput and pairs beside datasketch on the same documents."""
    from medray.bench.neardup import run_bench

    out.print_json(run_bench(tree, size_mb, seed))


# ---- demo -----------------------------------------------------------------------------------
@app.command("demo")
def demo(out_dir: str = typer.Option("demo-out", "--out", help="Output folder")) -> None:
    """Run everything built so far on the embedded default and print a summary."""
    from medray.demo import run_demo

    run_demo(out_dir)


def main() -> None:
    try:
        app()
    except MedrayError as exc:
        out.err_console.print(f"[bold red]error:[/bold red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
