"""`make demo`, MedTrim step: phantom image-report pairs, OBER, mining, MedTrim beside InfoNCE, a sweep.

Both models get the same towers, data, steps and batch size; only the loss (and so the triplets the
MedTrim loss needs) differs. They are compared on the held-out `test` split of the phantoms.
"""

from __future__ import annotations

import os

from medray import console as out

PHANTOM_STUDIES = 600


def medtrim_demo(out_dir: str) -> dict:
    from medray.config import load_config
    from medray.medtrim.evaluate import evaluate_model
    from medray.medtrim.job_settings import MedTrimTrainConfig
    from medray.medtrim.model import MedTrimModel
    from medray.medtrim.train import train_medtrim
    from medray.mm.pairs import read_pairs
    from medray.mm.phantom import write_phantoms

    phantom = os.path.abspath(os.path.join(out_dir, "phantom"))
    out.status(f"writing {PHANTOM_STUDIES} phantom chest radiographs with reports ...")
    written = write_phantoms(PHANTOM_STUDIES, phantom, seed=0, overwrite=True)
    out.table("Phantom studies", ("class", "studies"), written["classes"].items())
    pairs, _ = read_pairs(phantom)
    results, runs = {}, {}
    for kind in ("medtrim", "infonce"):
        cfg = load_config(MedTrimTrainConfig, "medtrim/train_tiny", [
            f"data.pairs={phantom}", f"loss.kind={kind}", f"checkpoint.name={kind}-tiny",
            f"checkpoint.storage_path={os.path.abspath(os.path.join(out_dir, 'medtrim'))}"])
        out.status(f"training with the {kind} loss ...")
        runs[kind] = train_medtrim(cfg, progress=out.status)
        results[kind] = evaluate_model(MedTrimModel.load(runs[kind]["export"]), pairs, split="test")
    data = runs["medtrim"]["data"]
    out.key_values("MedTrim data (OBER, mining)", {k: v for k, v in data.items() if not isinstance(v, (dict, list))})
    _print_side_by_side(results)
    sweep = _sweep_demo(phantom, out_dir)
    fine10 = {kind: results[kind]["i2t"]["fine"][10] for kind in results}
    return {"studies": written["studies"], "test_pairs": results["medtrim"]["n"], "export": runs["medtrim"]["export"],
            "fine_p10": fine10, "chance_fine_p10": results["medtrim"]["chance"]["fine"][10],
            "disease_p10": {kind: results[kind]["i2t"]["disease"][10] for kind in results},
            "losses": {kind: (runs[kind]["loss"], runs[kind]["final_loss"]) for kind in runs},
            "sweep": sweep}


def _print_side_by_side(results: dict) -> None:
    """Precision@R, image to text and text to image, per match mode, with chance beside."""
    rows = []
    for direction in ("i2t", "t2i"):
        for mode in ("fine", "disease"):
            for r, chance in results["medtrim"]["chance"][mode].items():
                rows.append((direction, mode, r, f"{results['medtrim'][direction][mode][r]:.3f}",
                             f"{results['infonce'][direction][mode][r]:.3f}", f"{chance:.3f}"))
    out.table(f"Held-out phantoms ({results['medtrim']['n']} test pairs): Precision@R",
              ("direction", "match", "R", "MedTrim", "InfoNCE", "chance"), rows)


def _sweep_demo(phantom: str, out_dir: str) -> dict:
    from medray.config import load_config
    from medray.medtrim.tune import print_sweep, run_sweep
    from medray.medtrim.tune_settings import MedTrimTuneConfig

    cfg = load_config(MedTrimTuneConfig, "medtrim/tune_tiny", [
        f"train.data.pairs={phantom}", f"out={os.path.abspath(os.path.join(out_dir, 'medtrim', 'sweep'))}"])
    out.status(f"sweeping {cfg.num_samples} MedTrim trials with ASHA ...")
    sweep = run_sweep(cfg, progress=out.status)
    print_sweep(sweep)
    return {k: v for k, v in sweep.items() if k != "rows"}
