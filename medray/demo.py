"""`make demo`: everything built so far, on the embedded default, with a readable summary.

Local Ray, local files under the output folder, MLflow on a SQLite file
there, and only data that installs with the package.
"""

from __future__ import annotations

import json
import os
import time

from medray import console as out

SAMPLE_REPORTS = (
    "Heart size is normal. No pleural effusion or pneumothorax. Mild bibasilar atelectasis.",
    "Left lower lobe consolidation, possibly pneumonia. Small left pleural effusion.",
    "Stable cardiomegaly without pulmonary edema. Right PICC line tip in the SVC.",
    "No acute fracture. Degenerative changes of the thoracic spine with scoliosis.",
    "Patient with type 2 diabetes mellitus and chronic kidney disease presents with dyspnea and fever.",
)
SAMPLE_ENTITIES = (
    "pleural effusion\tsymptom", "pneumothorax\tsymptom", "cardiomegaly\tsymptom", "lung opacity\tsymptom",
    "pulmonary edema\tsymptom", "atelectasis\tsymptom", "pneumonia\tdisease", "lung cancer\tdisease",
    "tuberculosis\tdisease", "heart failure\tdisease", "rib fracture\tdisease", "emphysema\tdisease",
    "left lung\tanatomy", "mediastinum\tanatomy", "chest\tanatomy", "heart\tanatomy",
    "chest radiograph\tmodality", "computed tomography\tmodality", "ultrasound\tmodality", "mri\tmodality",
)


def _step(title: str) -> float:
    out.console.rule(f"[bold]{title}")
    return time.perf_counter()


def run_demo(out_dir: str = "demo-out") -> dict:
    os.makedirs(out_dir, exist_ok=True)
    os.environ.setdefault("TQDM_DISABLE", "1")  # model-loading bars would bury the summary
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _quiet_ray_data()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.abspath(out_dir)}/mlflow.db")
    timings: dict[str, float] = {}
    summary: dict = {}

    t = _step("1. Build the Medical Entity Tree (ICD-10-CM, HPO, DICOM, radiology lexicon)")
    from medray.config import load_config
    from medray.met.jobs import run_build
    from medray.met.settings import MetBuildConfig

    tree_path = os.path.join(out_dir, "met", "tree.parquet")
    cfg = load_config(MetBuildConfig, "met/quickstart", [f"out={tree_path}"])
    built = run_build(cfg, progress=out.status)
    from medray.cli import _print_summary

    _print_summary(built["summary"])
    out.table("Merged concepts", ("source -> owner (how)", "nodes"), built["report"]["merged"].items())
    timings["build"] = time.perf_counter() - t
    summary["tree"] = {"nodes": built["summary"]["nodes"], "per_axis": built["summary"]["per_axis"],
                       "merged": built["report"]["merged_total"], "views": built["views"]}

    t = _step("2. Match sample report text (assertions from negation and uncertainty cues)")
    from medray.met.labels import observation_labels
    from medray.met.matcher import Matcher
    from medray.met.tree import Tree

    tree = Tree.load(tree_path)
    matcher = Matcher(tree)
    hits_table = matcher.match_batch(list(SAMPLE_REPORTS))
    rows = hits_table.to_pylist()
    out.table(f"{len(rows)} entities in {len(SAMPLE_REPORTS)} reports", ("report", "surface", "assertion", "node", "name"),
              ((r["doc"] + 1, r["surface"], r["assertion"], r["node_id"], tree.node(r["node_id"]).name) for r in rows))
    labels = [observation_labels([r for r in rows if r["doc"] == i], tree) for i in range(len(SAMPLE_REPORTS))]
    observed = [k for k in labels[0] if any(lab[k] is not None for lab in labels)]
    out.table("CheXpert-style labels (1 present, -1 uncertain, 0 absent)", ("observation", *(f"r{i + 1}" for i in range(len(labels)))),
              ([k, *("" if lab[k] is None else lab[k] for lab in labels)] for k in observed))
    timings["match"] = time.perf_counter() - t
    summary["matches"] = {"entities": len(rows), "by_assertion": _count(r["assertion"] for r in rows)}

    t = _step("3. Tag a generated corpus on Ray (actor pool) and measure node frequencies")
    summary["frequencies"] = _tag_demo_corpus(tree, matcher, out_dir)
    timings["tag"] = time.perf_counter() - t

    t = _step("4. Grow the tree from literature (HPO definitions, ICD-10-CM notes)")
    summary["grow"] = _grow_demo(tree_path, out_dir)
    timings["grow"] = time.perf_counter() - t

    t = _step("5. Coverage (AMCS) of a radiology entity list")
    summary["coverage"] = _coverage_demo(tree, out_dir)
    timings["coverage"] = time.perf_counter() - t

    summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    out.console.rule("[bold]Summary")
    out.key_values("medray demo", {
        "tree nodes": summary["tree"]["nodes"],
        "per axis": ", ".join(f"{a} {n}" for a, n in summary["tree"]["per_axis"].items()),
        "merged concepts": summary["tree"]["merged"],
        "entities in sample reports": summary["matches"]["entities"],
        "corpus mentions tagged": summary["frequencies"]["mentions"],
        "nodes grown": summary["grow"]["attached"],
        "AMCS forward / backward": f"{summary['coverage']['forward']:.3f} / {summary['coverage']['backward']:.3f}",
        "views": ", ".join(summary["tree"]["views"]),
        "MLflow": os.environ["MLFLOW_TRACKING_URI"],
        "seconds": summary["seconds"],
    })
    return summary


def _quiet_ray_data() -> None:
    """The demo prints its own summary; Ray Data's periodic progress log would bury it."""
    import logging

    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _count(values) -> dict[str, int]:
    out_: dict[str, int] = {}
    for v in values:
        out_[v] = out_.get(v, 0) + 1
    return out_


def _tag_demo_corpus(tree, matcher, out_dir: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray.data

    from medray.bench.corpus import generate_documents
    from medray.met.coverage import node_frequency_stats
    from medray.met.ray_match import count_mentions_ray, present_counts
    from medray.runtime import init_ray

    init_ray()
    corpus = os.path.join(out_dir, "corpus", "demo.parquet")
    os.makedirs(os.path.dirname(corpus), exist_ok=True)
    docs = list(generate_documents(tree, 2_000_000, seed=1))
    pq.write_table(pa.table({"text": docs}), corpus, row_group_size=1000)
    counts = count_mentions_ray(ray.data.read_parquet(corpus), matcher)
    stats = node_frequency_stats(tree, present_counts(counts))
    out.key_values(f"Node frequencies over {len(docs)} documents", {
        "mentions (present or uncertain)": stats["mentions"],
        "nodes with data": stats["nodes_with_data"],
        "nodes with no data": f"{stats['nodes_without_data']} ({stats['share_without_data']:.1%})",
        "entropy (normalised)": f"{stats['entropy_normalised']:.3f}",
        "tail share": f"{stats['tail_share']:.3f} (head of {stats['head_size']} nodes holds {stats['tail_quantile']:.0%})",
    })
    return stats


def _grow_demo(tree_path: str, out_dir: str) -> dict:
    from medray.config import load_config
    from medray.met.jobs import run_grow
    from medray.met.settings import MetGrowConfig

    cfg = load_config(MetGrowConfig, "met/grow", [f"tree={tree_path}", f"out={os.path.join(out_dir, 'met', 'tree_grown.parquet')}",
                                                   "parent_max_level=5"])
    result = run_grow(cfg, progress=out.status)
    report = result["report"]
    out.table("Growth", ("outcome", "count"), ((k, v) for k, v in report.items() if isinstance(v, int)))
    attached = report["examples"].get("attached", [])[:8]
    if attached:
        out.table("Attached (examples)", ("term", "parent", "score", "count"),
                  ((e.get("term"), e.get("parent"), e.get("score"), e.get("count")) for e in attached))
    return {"attached": report.get("attached", 0), "nodes_after": result["nodes_after"], "out": result["out"]}


def _coverage_demo(tree, out_dir: str) -> dict:
    from medray.met.coverage import coverage_report
    from medray.met.coverage_job import read_entities
    from medray.met.embed import get_embedder

    path = os.path.join(out_dir, "met", "radiology_entities.tsv")
    with open(path, "w") as fh:
        fh.write("\n".join(SAMPLE_ENTITIES) + "\n")
    report = coverage_report(tree, read_entities(path), get_embedder(), max_tree_terms_per_axis=1500)
    out.table("AMCS per axis", ("axis", "forward", "backward", "entities", "tree terms"),
              ((a, _fmt(v["forward"]), _fmt(v["backward"]), v["entities"], v["tree_terms"]) for a, v in report["per_axis"].items()))
    return report


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"
