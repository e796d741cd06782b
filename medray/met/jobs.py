"""The tree jobs as functions: the CLI and `jobs/*.py` both call these, nothing duplicated."""

from __future__ import annotations

import os
import tempfile
import time

from medray.config import to_dict
from medray.met.settings import MetBuildConfig, MetGrowConfig
from medray.met.tree import Tree
from medray.storage import atomic_write_bytes, is_remote, strip_suffix


def run_build(cfg: MetBuildConfig, progress=print) -> dict:
    """Build, save (parquet + summary JSON + build report), render, and track one tree."""
    import json

    from medray.met.build import build_tree

    start = time.perf_counter()
    tree, report = build_tree(cfg.sources.enabled(), merge_by_name=cfg.merge_by_name,
                              progress=lambda name: progress(f"source {name} ..."))
    tree.save(cfg.out)
    atomic_write_bytes(strip_suffix(cfg.out) + ".build.json", json.dumps(report, indent=2).encode())
    views = []
    if cfg.render:
        from medray.met.render import render_html, render_png

        progress("rendering views ...")
        views = [render_html(tree, strip_suffix(cfg.out) + ".html", max_nodes=cfg.render_max_nodes),
                 render_png(tree, strip_suffix(cfg.out) + ".png")]
    summary = tree.summary()
    result = {"out": cfg.out, "summary": summary, "report": report, "views": views,
              "seconds": round(time.perf_counter() - start, 1)}
    if cfg.tracking.enabled:
        from medray.tracking import job_tracking_uri, run

        with run(cfg.tracking.experiment, run_name="met-build", params=to_dict(cfg),
                 uri=job_tracking_uri(cfg.tracking.uri, cfg.out)) as tracked:
            metrics = {"nodes": summary["nodes"], "synonyms": summary["synonyms"], "codes": summary["codes"],
                       "max_level": summary["max_level"], "merged": report["merged_total"]}
            metrics.update({f"nodes_{axis}": n for axis, n in summary["per_axis"].items()})
            tracked.log_metrics(metrics)
            tracked.log_dict(result, "met_build.json")
            result["mlflow_run_id"] = tracked.run_id
    return result


def _literature_parquet(tree: Tree, cfg: MetGrowConfig, folder: str) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medray.met.grow import literature_corpus

    texts = list(literature_corpus(tree, hpo_path=cfg.hpo_path, symp_path=cfg.symp_path))
    path = os.path.join(folder, "literature.parquet")
    pq.write_table(pa.table({cfg.text_column: texts}), path, row_group_size=4096)
    return path


def run_grow(cfg: MetGrowConfig, progress=print) -> dict:
    """Count candidates on Ray, attach them to the frozen tree, save and track the grown tree."""
    from medray.met.embed import get_embedder
    from medray.met.grow import count_candidates_ray, grow_tree
    from medray.runtime import init_ray

    start = time.perf_counter()
    tree = Tree.load(cfg.tree)
    init_ray(cfg.ray_address)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = cfg.corpus
        if corpus is None:
            progress("corpus: HPO definitions and ICD-10-CM notes")
            corpus = _literature_parquet(tree, cfg, tmp)
        progress(f"counting candidates on Ray from {corpus} ...")
        counts = count_candidates_ray([corpus], text_column=cfg.text_column, num_partitions=2)
    progress(f"{len(counts)} distinct candidates; embedding and attaching ...")
    embedder = get_embedder()
    cache = cfg.embedding_cache or (None if is_remote(cfg.out) else strip_suffix(cfg.out) + ".embeddings.npz")
    if cache:
        embedder.load_cache(cache)
    grown, report = grow_tree(
        tree, counts, embedder, min_count=cfg.min_count, attach_threshold=cfg.attach_threshold,
        ambiguity_margin=cfg.ambiguity_margin, axes=cfg.axes, arbiter=cfg.arbiter,
        require_shared_word=cfg.require_shared_word, parent_max_level=cfg.parent_max_level,
        lexical=cfg.lexical, fragment_share=cfg.fragment_share, drop_generic=cfg.drop_generic,
        source_label="literature",
    )
    grown.save(cfg.out)
    if cache:
        embedder.save_cache(cache)
    result = {"tree": cfg.tree, "out": cfg.out, "nodes_before": len(tree), "nodes_after": len(grown),
              "report": report, "seconds": round(time.perf_counter() - start, 1)}
    if cfg.tracking.enabled:
        from medray.tracking import job_tracking_uri, run

        with run(cfg.tracking.experiment, run_name="met-grow", params=to_dict(cfg),
                 uri=job_tracking_uri(cfg.tracking.uri, cfg.out)) as tracked:
            tracked.log_metrics({"nodes_before": len(tree), "nodes_after": len(grown),
                                 "attached": report.get("attached", 0), "candidates": report.get("candidates", 0)})
            tracked.log_dict(result, "met_grow.json")
            result["mlflow_run_id"] = tracked.run_id
    return result
