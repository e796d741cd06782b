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

    t = _step("3. Grow the tree from literature (HPO definitions, ICD-10-CM notes)")
    summary["grow"] = _grow_demo(tree_path, out_dir)
    timings["grow"] = time.perf_counter() - t

    t = _step("4. Coverage (AMCS) of a radiology entity list")
    summary["coverage"] = _coverage_demo(tree, out_dir)
    timings["coverage"] = time.perf_counter() - t

    t = _step("5. Text data engine on Ray: clean, dedup, tag, tree-guided sampling, pack")
    summary["data"] = _data_demo(tree, tree_path, out_dir)
    timings["data"] = time.perf_counter() - t

    t = _step("6. Continual pretraining of a tiny Llama on the packed shards (Ray Train, 2 workers, DDP)")
    summary["cpt"] = _cpt_demo(out_dir)
    timings["cpt"] = time.perf_counter() - t

    t = _step("7. SFT / mid-training: Q&A, structured chain of thought (rising share), general replay")
    summary["sft"] = _sft_demo(tree, out_dir, summary["cpt"]["export"])
    timings["sft"] = time.perf_counter() - t

    t = _step("8. MedTrim: phantom radiographs and reports, OBER, triplet mining, MedTrim beside InfoNCE, a sweep")
    from medray.demo_medtrim import medtrim_demo

    summary["medtrim"] = medtrim_demo(out_dir)
    timings["medtrim"] = time.perf_counter() - t

    t = _step("9. Synthesis: node-guided retrieval, two-stage filter, captions and VQA, multi-hop QA, reject sampling")
    from medray.demo_synth import synth_demo

    summary["synth"] = synth_demo(out_dir, tree_path, summary["medtrim"].get("export"), summary["sft"].get("export"))
    timings["synth"] = time.perf_counter() - t

    t = _step("10. Cluster deployment: KubeRay manifests, the Ray cluster launcher config and the image, validated")
    from medray.demo_deploy import deploy_demo

    summary["deploy"] = deploy_demo()
    timings["deploy"] = time.perf_counter() - t

    summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    out.console.rule("[bold]Summary")
    out.key_values("medray demo", {
        "tree nodes": summary["tree"]["nodes"],
        "per axis": ", ".join(f"{a} {n}" for a, n in summary["tree"]["per_axis"].items()),
        "merged concepts": summary["tree"]["merged"],
        "entities in sample reports": summary["matches"]["entities"],
        "data engine": (f"{summary['data']['records']} records -> {summary['data']['docs']} docs, "
                        f"{summary['data']['packed_tokens']} packed tokens; planted defects found "
                        f"{summary['data']['planted_found']}/{summary['data']['planted']}"),
        "continual pretraining": (f"{summary['cpt']['steps']} steps, loss {summary['cpt']['first_loss']:.2f} -> "
                                  f"{summary['cpt']['final_loss']:.2f}; checkpoint {summary['cpt']['checkpoint']}; "
                                  f"model {summary['cpt']['export']}"),
        "SFT": (f"{summary['sft']['steps']} steps, loss {summary['sft']['first_loss']:.2f} -> "
                f"{summary['sft']['final_loss']:.2f}; reasoning share {summary['sft']['reasoning_share']}; "
                f"planted rejects found {summary['sft']['planted_found']}/{summary['sft']['planted']}; "
                f"model {summary['sft']['export']}"),
        "MedTrim (test split)": (f"fine Precision@10 {summary['medtrim']['fine_p10']['medtrim']:.3f} vs InfoNCE "
                                 f"{summary['medtrim']['fine_p10']['infonce']:.3f} (chance "
                                 f"{summary['medtrim']['chance_fine_p10']:.3f}); sweep {summary['medtrim']['sweep']['trials']} "
                                 f"trials, {summary['medtrim']['sweep']['stopped_early']} stopped by ASHA"),
        "synthesis": (f"{summary['synth']['aligned']} of {summary['synth']['pairs_in']} pairs kept by the filter; "
                      f"{summary['synth']['items_kept']} of {summary['synth']['items']} items and "
                      f"{summary['synth']['kgqa_kept']} of {summary['synth']['kgqa_items']} multi-hop questions passed "
                      f"(tiny model taught the formats); {summary['synth']['sft_rows']} SFT rows"
                      + (f", vision-language SFT {summary['synth']['vlm_sft']['steps']} steps" if summary['synth']['vlm_sft'] else "")),
        "cluster deployment": (f"{summary['deploy']['k8s_objects']} Kubernetes objects rendered, launcher config and "
                               f"image checked: {summary['deploy']['problems']} problems"
                               if summary["deploy"]["checked"] else "not checked (no cluster/ folder)"),
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


def _data_demo(tree, tree_path: str, out_dir: str) -> dict:
    """Generate a corpus with planted defects, train the quality model and tokenizer on it, run the pipeline."""
    from medray.config import load_config
    from medray.data.commands import print_sampling, print_stage_table
    from medray.data.pipeline import run_pipeline
    from medray.data.quality_bootstrap import quality_train
    from medray.data.settings import DataPipelineConfig
    from medray.data.synthetic import generate_corpus
    from medray.data.tokenizer import tokenizer_train

    corpus, data = os.path.join(out_dir, "corpus"), os.path.join(out_dir, "data")
    out.status("generating a corpus with planted defects ...")
    truth = generate_corpus(tree, corpus, n_docs=1500, files=4, seed=0)
    out.status("training the quality classifier (bootstrap) and a tokenizer ...")
    quality = quality_train({"model_path": os.path.join(data, "quality.bin"), "rounds": 1, "corpus": [corpus]})
    tokenizer_train(corpus, os.path.join(data, "tokenizer"), vocab_size=4000)
    th = truth["thresholds"]
    cfg = load_config(DataPipelineConfig, "data/pipeline", [
        f"input=[{corpus}]", f"out={data}", f"tag.tree={tree_path}", f"quality.model_path={quality['model_path']}",
        f"pack.tokenizer={os.path.join(data, 'tokenizer')}", "pack.seq_len=512", "chunk_lines=400",
        f"rules.min_words={th['min_words']}", f"rules.max_words={th['max_words']}", f"rules.max_digit_ratio={th['max_digit_ratio']}",
        f"rules.max_repeated_line_share={th['max_duplicate_line_fraction']}",
        f"rules.max_boilerplate_share={th['max_boilerplate_line_fraction']}", "resume=false"])
    report = run_pipeline(cfg, progress=out.status)
    print_stage_table(report["stages"])
    print_sampling(report["sampling"])
    found = _planted_found(data, truth["expected"])
    out.key_values("Data engine outputs", {**report["outputs"], "planted defects found": f"{found}/{len(truth['expected'])}",
                                          "manifest": report["manifest"], "mlflow run": report.get("mlflow_run_id", "-")})
    return {"records": report["stages"]["read"]["in"], "docs": report["outputs"]["docs"],
            "packed_tokens": report["outputs"]["packed_tokens"], "planted": len(truth["expected"]), "planted_found": found,
            "sampling": {k: report["sampling"]["after"][k] for k in ("entropy_bits", "tail_token_share")}}


def _cpt_demo(out_dir: str) -> dict:
    """A few hundred steps of continual pretraining on the data engine's shards; the loss curve from MLflow."""
    from medray.config import load_config
    from medray.train.cpt import CPTConfig, CPTTask
    from medray.train.loop import run_training

    data = os.path.join(out_dir, "data")
    cfg = load_config(CPTConfig, "train/cpt_tiny", [
        f"model.tokenizer={os.path.join(data, 'tokenizer')}", "model.max_position_embeddings=512",
        f"data.sources=[{{name: medical, path: {os.path.join(data, 'packed')}}}]", "max_steps=200", "log_every=20",
        f"checkpoint.storage_path={os.path.join(os.path.abspath(out_dir), 'train')}", "checkpoint.every_steps=100"])
    result = run_training(cfg, CPTTask(), progress=out.status)
    return _training_outputs("Continual pretraining", result)


def _training_outputs(title: str, result: dict) -> dict:
    """The loss curve from MLflow and where the checkpoint, model and run are."""
    from medray.tracking import metric_history

    curve = metric_history(result["mlflow_run_id"], result["tracking_uri"], "loss")
    out.table(f"{title}: loss curve", ("step", "mean loss since the row before"), ((step, f"{loss:.3f}") for step, loss in curve))
    out.key_values(f"{title}: outputs", {"checkpoint": result["checkpoint"], "model (Hugging Face format)": result["export"],
                                         "mlflow run": result["mlflow_run_id"], "seconds": result["seconds"]})
    return {"steps": result["steps"], "first_loss": curve[0][1] if curve else float("nan"),
            "final_loss": result["loss"], "checkpoint": result["checkpoint"], "export": result["export"]}


def _sft_demo(tree, out_dir: str, model_path: str) -> dict:
    """A short SFT of the CPT model on generated sources; planted malformed rows must land in the rejects."""
    import pyarrow.parquet as pq

    from medray.config import load_config
    from medray.train.loop import run_training
    from medray.train.sft import SFTConfig, SFTTask, print_data_report
    from medray.train.sft_prepare import REJECTS
    from medray.train.sft_synthetic import generate_sft_sources

    out.status("generating SFT sources from HPO definitions and the tree ...")
    sources = generate_sft_sources(tree, os.path.join(out_dir, "sft"))
    paths, steps = sources["paths"], 60
    cfg = load_config(SFTConfig, "train/sft_tiny", [
        f"model.path={model_path}", f"max_steps={steps}", f"data.schedule.end_step={steps}",
        f"data.sources=[{{name: medical, path: {paths['medical']}, weight: 1.0}}, "
        f"{{name: reasoning, path: {paths['reasoning']}, weight: 1.0}}, {{name: general, path: {paths['general']}, share: 0.2}}]",
        f"checkpoint.storage_path={os.path.join(os.path.abspath(out_dir), 'train')}", "checkpoint.every_steps=30"])
    task = SFTTask(progress=out.status)
    result = run_training(cfg, task, progress=out.status)
    print_data_report(task.data_report)
    plan = task.plan(cfg)
    counts = plan.count_matrix(steps)
    reasoning = counts[:, plan.names.index("reasoning")]
    thirds = [float(reasoning[i:i + steps // 3].sum() / counts[i:i + steps // 3].sum()) for i in range(0, steps, steps // 3)]
    rejects = pq.read_table(os.path.join(result["run_dir"], REJECTS, "medical")).to_pylist()
    planted = sources["rejects"]["medical"]
    found = sum(planted.get(str(r["line"])) == r["reason"] for r in rejects)
    return {**_training_outputs("SFT", result), "planted": len(planted), "planted_found": found,
            "reasoning_share": " -> ".join(f"{share:.2f}" for share in thirds)}


def _planted_found(data: str, expected: dict[str, str]) -> int:
    """Planted defects that reached the rejects or filtered outputs with the expected reason."""
    from medray.data.layout import Layout

    got = Layout(data).dropped_reasons()
    return sum(got.get(i) == reason for i, reason in expected.items())


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
