"""`make demo`, synthesis step: the phantom pairs and the tree through retrieval, the two-stage filter
(stage 2 scored by the MedTrim model of the step before), captions and VQA, multi-hop QA from the data
engine's back-fill list with three experts and reject sampling, on Ray, with a tiny local model.

A model of a few hundred thousand parameters writes no valid item: the pass rates printed here are the
validators and checks at work, not a measure of synthesis quality. The same config with `engine.model`
pointing at a real instruction model (and `engine.backend=vllm` on a GPU) is the production run; whatever
passes goes to `sft/synth.jsonl`, which `medray train sft` reads as a source.
"""

from __future__ import annotations

import os

from medray import console as out


def synth_demo(out_dir: str, tree_path: str, medtrim_export: str | None) -> dict:
    from medray.config import load_config
    from medray.synth.run import run_synth
    from medray.synth.settings import SynthConfig
    from medray.synth.summary import print_report
    from medray.synth.tiny_model import write_tiny_causal_lm

    root = os.path.abspath(os.path.join(out_dir, "synth"))
    model = write_tiny_causal_lm(os.path.join(root, "model"), seed=0)
    overrides = [f"tree={os.path.abspath(tree_path)}", f"pairs={os.path.abspath(os.path.join(out_dir, 'phantom'))}",
                 f"out={root}", f"engine.model={model}", "resume=false",
                 f"kgqa.starts={os.path.abspath(os.path.join(out_dir, 'data', 'report.json'))}", "kgqa.max_starts=20"]
    if medtrim_export:
        overrides += ["align.score.model=medtrim", f"align.score.model_path={medtrim_export}",
                      "align.score.threshold=per_node", "align.score.drop_percent=10"]
    report = run_synth(load_config(SynthConfig, "synth/tiny", overrides), progress=out.status)
    print_report(report)
    items, kgqa = report["stages"]["items"], report["stages"]["kgqa"]
    if report["sft"]["rows"]:
        out.status(f"{report['sft']['rows']} items passed: {report['sft']['path']} is an SFT source for mid-training")
    else:
        out.status("no generated item passed validation (a tiny model cannot write them): nothing is handed to "
                   "mid-training; point engine.model at a real model for a production run")
    return {"pairs_in": report["pairs"]["in_split"], "aligned": report["stages"]["align"]["kept"],
            "items": items["in"], "items_kept": items["kept"], "item_rejects": items["reject_reasons"],
            "kgqa_items": kgqa["items"], "kgqa_kept": kgqa["items_kept"], "kgqa_pass_rates": kgqa["pass_rates"],
            "sft_rows": report["sft"]["rows"], "seconds": report["seconds"]}
