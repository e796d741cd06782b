"""The benchmark's baseline: the engine called directly, in a fresh Python process.

Why a fresh process: the pipeline's actors start from nothing (a process,
torch and the engine imported, the model loaded), so the baseline does too,
as a user's standalone script would. In the driver the imports would already
be paid and the comparison would charge the pipeline for them. A fresh
process also frees the GPU when it exits, and its CPU threads are set the
way Ray sets an actor's (`OMP_NUM_THREADS` = the actor's CPUs).

`python -m medray.bench.synth_direct REQUEST_DIR`: reads `engine.pkl` (the
EngineConfig) and `prompts.arrow`, writes `outputs.arrow` and `times.json`
(wall-clock marks: imported, loaded, done) into the same folder.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from medray.errors import MedrayError


def _write_arrow(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def child_env(cfg) -> dict[str, str]:
    """This process's environment, with a CPU engine's threads pinned as Ray pins an actor's."""
    env = dict(os.environ)
    if cfg.backend == "transformers" and cfg.device != "cuda":
        env["OMP_NUM_THREADS"] = str(max(1, int(cfg.cpus_per_actor)))
    return env


def run_direct_process(table: pa.Table, cfg, workdir: str | Path, timeout: float | None = None) -> tuple[dict, pa.Table]:
    """Generate `table` with a fresh engine in a new process: (timings, output table).

    `seconds` runs from starting the process to the last token, so it holds
    the interpreter, the imports and the model load (`start_seconds`,
    `load_seconds`) as the pipeline's actors do.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "engine.pkl").write_bytes(pickle.dumps(cfg))
    _write_arrow(table, work / "prompts.arrow")
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "medray.bench.synth_direct", str(work)], env=child_env(cfg),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise MedrayError(f"the direct engine process failed (exit {proc.returncode}):\n{tail}")
    marks = json.loads((work / "times.json").read_text())
    out = _read_arrow(work / "outputs.arrow")
    tokens = int(pc.sum(out.column("num_generated_tokens")).as_py() or 0)
    seconds = marks["done"] - started
    generate = marks["done"] - marks["loaded"]
    return {"rows": out.num_rows, "output_tokens": tokens, "seconds": round(seconds, 3),
            "start_seconds": round(marks["imported"] - started, 3),  # interpreter + torch + engine imports
            "load_seconds": round(marks["loaded"] - marks["imported"], 3),
            "generate_seconds": round(generate, 3),
            "tokens_per_s": round(tokens / seconds, 2),
            "generate_tokens_per_s": round(tokens / generate, 2)}, out


def main(workdir: str) -> None:
    work = Path(workdir)
    cfg = pickle.loads((work / "engine.pkl").read_bytes())
    table = _read_arrow(work / "prompts.arrow")
    from medray.synth.engine import direct_engine

    if cfg.backend == "vllm":
        import vllm  # noqa: F401  (its import is part of starting, as in a replica)
    else:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    imported = time.time()
    engine = direct_engine(cfg)
    loaded = time.time()
    out = engine.generate_table(table, cfg)
    done = time.time()
    _write_arrow(out, work / "outputs.arrow")
    (work / "times.json").write_text(json.dumps({"imported": imported, "loaded": loaded, "done": done}))


if __name__ == "__main__":
    main(sys.argv[1])
