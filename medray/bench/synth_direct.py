"""The benchmark's baseline: the engine called directly, in a fresh Python process.

Why a fresh process: the pipeline's actors start from nothing (a process,
torch and the engine imported, the model loaded), so the baseline does too,
as a user's standalone script would. In the driver the imports would already
be paid and the comparison would charge the pipeline for them. A fresh
process also frees the GPU when it exits, and its CPU threads are set the
way Ray sets an actor's (`OMP_NUM_THREADS` = the actor's CPUs).

With `concurrency` replicas in the pipeline, as many engines run here side
by side, each on its share of the prompts with one replica's CPUs or GPUs,
so that both sides have the same means.

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

from medray.errors import ConfigError, MedrayError


def _write_arrow(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_arrow(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else every device torch counts."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def gpus_per_engine(cfg) -> int:
    if cfg.backend == "vllm":
        return cfg.tensor_parallel_size
    return 1 if cfg.device == "cuda" else 0


def child_envs(cfg, base: dict[str, str] | None = None, gpus: list[str] | None = None) -> list[dict[str, str]]:
    """One environment per engine process, with the means one replica of the pipeline gets.

    CPU engines: `OMP_NUM_THREADS` = the actor's CPUs, as Ray sets an
    actor's. GPU engines: disjoint slices of the visible GPUs, as many per
    engine as a replica takes (tensor parallelism for vLLM).
    """
    base = dict(os.environ if base is None else base)
    per = gpus_per_engine(cfg)
    if per:
        gpus = visible_gpus() if gpus is None else gpus
        need = per * cfg.concurrency
        if len(gpus) < need:
            raise ConfigError("concurrency", f"the direct side runs {cfg.concurrency} engine(s) of {per} GPU(s) "
                                             f"side by side, as the pipeline's replicas: {need} GPUs needed, {len(gpus)} visible")
        return [{**base, "CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per:(i + 1) * per])} for i in range(cfg.concurrency)]
    return [{**base, "OMP_NUM_THREADS": str(max(1, int(cfg.cpus_per_actor)))} for _ in range(cfg.concurrency)]


def _shares(table: pa.Table, parts: int) -> list[pa.Table]:
    size = -(-table.num_rows // parts)
    return [table.slice(i * size, size) for i in range(parts) if i * size < table.num_rows]


def run_direct_process(table: pa.Table, cfg, workdir: str | Path) -> tuple[dict, pa.Table]:
    """Generate `table` with fresh engines in new processes: (timings, output table).

    As many engines as the pipeline has replicas (`cfg.concurrency`) run
    side by side on equal shares of the rows, each with one replica's means
    (`child_envs`). `seconds` runs from starting them to the last token, so
    it holds the interpreter, the imports and the model load
    (`start_seconds`, `load_seconds`: until the last engine is past each) as
    the pipeline's actors do.
    """
    work = Path(workdir)
    shares = _shares(table, cfg.concurrency)
    envs = child_envs(cfg)[:len(shares)]
    dirs = []
    for i, share in enumerate(shares):
        d = work / f"engine-{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "engine.pkl").write_bytes(pickle.dumps(cfg))
        _write_arrow(share, d / "prompts.arrow")
        dirs.append(d)
    started = time.time()
    procs = []
    for d, env in zip(dirs, envs):
        with open(d / "log.txt", "wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "medray.bench.synth_direct", str(d)], env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait() for p in procs]
    finally:  # interrupted: no engine outlives the benchmark
        for p in procs:
            if p.poll() is None:
                p.kill()
    for d, code in zip(dirs, codes):
        if code != 0:
            tail = "\n".join((d / "log.txt").read_text(errors="replace").strip().splitlines()[-15:])
            raise MedrayError(f"the direct engine process failed (exit {code}):\n{tail}")
    marks = [json.loads((d / "times.json").read_text()) for d in dirs]
    out = pa.concat_tables([_read_arrow(d / "outputs.arrow") for d in dirs])
    tokens = int(pc.sum(out.column("num_generated_tokens")).as_py() or 0)
    imported, loaded, done = (max(m[k] for m in marks) for k in ("imported", "loaded", "done"))
    seconds, generate = done - started, done - loaded
    return {"rows": out.num_rows, "output_tokens": tokens, "engines": len(dirs), "seconds": round(seconds, 3),
            "start_seconds": round(imported - started, 3),  # interpreter + torch + engine imports
            "load_seconds": round(loaded - imported, 3),
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
