"""`make demo`, synthesis step: the phantom pairs and the tree through retrieval, the two-stage filter
(stage 2 scored by the MedTrim model of the step before), captions and VQA, multi-hop QA from the data
engine's back-fill list with three experts and reject sampling, on Ray, with a tiny local model.

A tiny model follows no instruction, so it is first taught the output formats on the train split's tasks
and their reference outputs (`medray synth warm-up`), then generates for the validate split, where the
validators judge every item. What passes is handed to a short vision-language SFT (connector only) on
the mid-training model of step 7. With a real instruction model (`engine.model`, `engine.backend=vllm` on
a GPU) the warm-up is not needed.
"""

from __future__ import annotations

import os

from medray import console as out

WARM_UP_STEPS = 300
VLM_SFT_STEPS = 20


def synth_demo(out_dir: str, tree_path: str, medtrim_export: str | None, sft_export: str | None) -> dict:
    from medray.config import load_config
    from medray.synth.run import run_synth
    from medray.synth.settings import SynthConfig
    from medray.synth.summary import print_report
    from medray.synth.tiny_model import write_tiny_causal_lm
    from medray.synth.warm_up import teach

    root = os.path.abspath(os.path.join(out_dir, "synth"))
    base = write_tiny_causal_lm(os.path.join(root, "model-base"), seed=0)
    overrides = [f"tree={os.path.abspath(tree_path)}", f"pairs={os.path.abspath(os.path.join(out_dir, 'phantom'))}",
                 f"out={root}", f"engine.model={base}", "resume=false", "engine.apply_chat_template=true",
                 f"kgqa.starts={os.path.abspath(os.path.join(out_dir, 'data', 'report.json'))}", "kgqa.max_starts=20"]
    if medtrim_export:
        overrides += ["align.score.model=medtrim", f"align.score.model_path={medtrim_export}",
                      "align.score.threshold=per_node", "align.score.drop_percent=10"]
    cfg = load_config(SynthConfig, "synth/tiny", overrides)
    taught = teach(cfg, os.path.join(root, "model"), split="train", max_pairs=200, steps=WARM_UP_STEPS,
                   progress=out.status)
    out.key_values("Warm-up on the train split (reference outputs)", {
        "tasks": taught["tasks"], "loss by quarter": " -> ".join(f"{x:.2f}" for x in taught["loss_by_quarter"])})
    cfg.engine.model = taught["model"]
    report = run_synth(cfg, progress=out.status)
    print_report(report)
    items, kgqa = report["stages"]["items"], report["stages"]["kgqa"]
    handed = _vlm_sft(out_dir, report["sft"], sft_export) if report["sft"]["rows"] and sft_export else None
    return {"pairs_in": report["pairs"]["in_split"], "aligned": report["stages"]["align"]["kept"],
            "items": items["in"], "items_kept": items["kept"], "item_rejects": items["reject_reasons"],
            "kgqa_items": kgqa["items"], "kgqa_kept": kgqa["items_kept"], "kgqa_pass_rates": kgqa["pass_rates"],
            "sft_rows": report["sft"]["rows"], "vlm_sft": handed, "seconds": report["seconds"]}


def _vlm_sft(out_dir: str, sft: dict, model_path: str) -> dict:
    """A few connector-only steps of a Llava-style VLM on the kept items, beside the general replay."""
    from medray.config import load_config
    from medray.train.loop import run_training
    from medray.train.sft import SFTConfig, SFTTask, print_data_report

    out.status(f"handing {sft['rows']} kept items to mid-training: {VLM_SFT_STEPS} steps of vision-language SFT ...")
    general = os.path.abspath(os.path.join(out_dir, "sft", "general.jsonl"))
    cfg = load_config(SFTConfig, "train/sft_vlm_tiny", [
        f"model.path={model_path}", f"max_steps={VLM_SFT_STEPS}", "log_every=5",
        f"data.sources=[{{name: synth, path: {sft['path']}, weight: 1.0}}, {{name: general, path: {general}, share: 0.25}}]",
        f"data.image_root={os.path.abspath(os.path.join(out_dir, 'phantom'))}", "checkpoint.name=sft-vlm-synth",
        f"checkpoint.storage_path={os.path.join(os.path.abspath(out_dir), 'train')}", "checkpoint.every_steps=20"])
    task = SFTTask(progress=out.status)
    result = run_training(cfg, task, progress=out.status)
    print_data_report(task.data_report)
    return {"steps": result["steps"], "loss": result["loss"], "export": result["export"]}
