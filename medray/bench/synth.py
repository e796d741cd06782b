"""`medray bench synth`: output tokens/s through the Ray Data pipeline beside the same engine called directly.

Both sides run the same engine on the same prompts and model in one run:
vLLM (`ray.data.llm` replicas against `vllm.LLM.generate`) where vLLM and a
GPU are present, the `transformers` backend (an actor pool against
`HFEngine` in this process, with the same CPU threads as one actor)
elsewhere. Sampling is greedy with `ignore_eos` and a fixed
`max_new_tokens`, so both sides generate exactly the same number of tokens
and the ratio of their rates is the cost of the pipeline and nothing else.

Each side's seconds run from the first call to the last token and include
loading the model (actors start and load inside the pipeline's run, so the
direct side's load counts too; it is also reported apart). The pipeline
runs first: its actors are gone when it ends, so the direct engine then has
the device to itself. `pipeline_overhead` = 1 - pipeline tokens/s / direct
tokens/s; the target is at most 0.10. Startup is a fixed cost, so small runs
on CPU sit far above it: the target is for runs whose generation dominates.
`first_block_seconds` (actors up, model loaded, first block generated)
bounds that fixed part from above.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

import typer

from medray.errors import ConfigError, MedrayError

if TYPE_CHECKING:
    import pyarrow as pa

TARGET_OVERHEAD = 0.10
BACKENDS = ("auto", "transformers", "vllm")
_QUESTIONS = ("Describe the finding in this report: {}", "Write the impression for: {}",
              "List the differential diagnosis for: {}", "Explain to a student: {}")


def bench_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` report-grounded prompts of varied length, the same for the same seed."""
    from medray.synth.tiny_model import report_lines

    lines = list(report_lines(n, seed))
    return [_QUESTIONS[i % len(_QUESTIONS)].format(line) for i, line in enumerate(lines)]


def read_prompts(prompts: int | str, seed: int = 0) -> list[str]:
    """A count of generated prompts, or a .txt (a prompt per line) / .jsonl (`prompt` field) file, local or s3://."""
    from medray import storage

    if isinstance(prompts, int) or (isinstance(prompts, str) and prompts.isdigit()):
        count = int(prompts)
        if count < 1:
            raise ConfigError("prompts", f"must be at least 1, got {count}")
        return bench_prompts(count, seed)
    text = storage.read_text(prompts)
    if prompts.endswith(".jsonl"):
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(str(json.loads(line)["prompt"]))
                except (ValueError, KeyError, TypeError):
                    raise MedrayError(f"{prompts}:{n}: expected a JSON object with a 'prompt' field") from None
    else:
        out = [line for line in text.splitlines() if line.strip()]
    if not out:
        raise MedrayError(f"{prompts}: no prompts")
    return out


def resolve_backend(backend: str) -> str:
    from medray.synth.engine_settings import vllm_problem

    if backend not in BACKENDS:
        raise ConfigError("backend", f"{backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if vllm_problem() is None else "transformers"
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:  # GPUs are counted once Ray is up
        raise ConfigError("backend", "vllm cannot run here: the vllm package is not installed; use --backend transformers")
    return backend


def device_name(backend: str) -> str:
    import torch

    if backend == "vllm" or (torch.cuda.is_available() and backend != "transformers"):
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "gpu (Ray cluster)"
    return "cpu"


def _blocks(table: pa.Table, parts: int) -> list[pa.Table]:
    """Slices of `table`, so that every actor of the pool gets work and the pipeline streams."""
    size = max(1, math.ceil(table.num_rows / parts))
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def _run_pipeline(table: pa.Table, cfg) -> dict:
    import pyarrow.compute as pc
    import ray

    from medray.synth.engine import generate_dataset

    started = time.perf_counter()
    ds = generate_dataset(ray.data.from_arrow(_blocks(table, cfg.concurrency * 4)), cfg)
    rows = tokens = first_tokens = 0
    first_at = None
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        rows += batch.num_rows
        tokens += int(pc.sum(batch.column("num_generated_tokens")).as_py() or 0)
        if first_at is None:
            first_at, first_tokens = time.perf_counter(), tokens
    ended = time.perf_counter()
    seconds = ended - started
    steady = (tokens - first_tokens) / (ended - first_at) if first_at is not None and ended > first_at else None
    return {"rows": rows, "output_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 2),
            # actors started, model loaded, first block generated: the fixed part of the pipeline's cost
            "first_block_seconds": round(first_at - started, 3) if first_at is not None else None,
            "first_block_tokens": first_tokens,
            # the blocks after the first: the pipeline's rate once running (None with a single block)
            "steady_tokens_per_s": round(steady, 2) if steady and tokens > first_tokens else None}


def _run_direct(table: pa.Table, cfg) -> dict:
    import pyarrow.compute as pc

    from medray.synth.engine import direct_engine

    started = time.perf_counter()
    engine = direct_engine(cfg)
    loaded = time.perf_counter()
    out = engine.generate_table(table, cfg)
    done = time.perf_counter()
    del engine
    tokens = int(pc.sum(out.column("num_generated_tokens")).as_py() or 0)
    return {"rows": out.num_rows, "output_tokens": tokens, "seconds": round(done - started, 3),
            "load_seconds": round(loaded - started, 3), "generate_seconds": round(done - loaded, 3),
            "tokens_per_s": round(tokens / (done - started), 2),
            "generate_tokens_per_s": round(tokens / (done - loaded), 2)}


def run_bench(backend: str = "auto", model: str | None = None, prompts: int | str = 256, max_new_tokens: int = 64,
              batch_size: int = 16, concurrency: int = 1, *, seed: int = 0, gpu_memory_utilization: float = 0.85,
              progress: Callable[[str], None] = print) -> dict:
    """Time the pipeline and the direct engine on the same prompts; the benchmark's JSON as a dict.

    `model` is a Hugging Face folder (local or s3://); None writes the tiny
    local model to a temporary folder (CPU-sized: it shows the harness,
    not a throughput worth quoting).
    """
    import pyarrow as pa

    from medray.synth.engine_settings import EngineConfig, SamplingConfig

    backend = resolve_backend(backend)
    texts = read_prompts(prompts, seed)
    cfg = EngineConfig(backend=backend, model=model or "", batch_size=batch_size, concurrency=concurrency,
                       gpu_memory_utilization=gpu_memory_utilization,
                       sampling=SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed, ignore_eos=True))
    cfg.check(prefix="", need_runtime=False, files=False)
    scratch, started_ray = None, False
    try:
        if model is None:
            from medray.synth.tiny_model import write_tiny_causal_lm

            scratch = tempfile.mkdtemp(prefix="medray-bench-synth-")
            progress("writing the tiny local model")
            cfg.model = write_tiny_causal_lm(f"{scratch}/tiny", seed=seed)
        cfg.check(prefix="", need_runtime=False)  # before Ray starts
        started_ray = _ensure_ray()
        cfg.check(prefix="")  # vLLM also counts the cluster's GPUs
        table = pa.table({"prompt": pa.array(texts, pa.string())})
        progress(f"pipeline: {len(texts)} prompts x {max_new_tokens} tokens, {backend}, {concurrency} replica(s)")
        pipeline = _run_pipeline(table, cfg)
        progress(f"direct: the same prompts through the {backend} engine in this process")
        direct = _run_direct(table, cfg)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        if started_ray:
            from medray.runtime import shutdown_ray

            shutdown_ray()
    overhead = 1.0 - pipeline["tokens_per_s"] / direct["tokens_per_s"]
    steady = pipeline["steady_tokens_per_s"]
    steady_overhead = None if steady is None else round(1.0 - steady / direct["generate_tokens_per_s"], 4)
    return {
        "benchmark": "synth",
        "backend": backend,
        "device": device_name(backend),
        "model": "tiny (written for this run)" if scratch else model,
        "prompts": len(texts),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "output_tokens": direct["output_tokens"],
        "tokens_equal": pipeline["output_tokens"] == direct["output_tokens"],
        "pipeline": pipeline,
        "direct": direct,
        "pipeline_overhead": round(overhead, 4),
        "target": TARGET_OVERHEAD,
        "within_target": overhead <= TARGET_OVERHEAD,
        # start-up excluded on both sides: the pipeline after its first block beside the loaded engine's rate
        "steady_state_overhead": steady_overhead,
        "steady_state_within_target": None if steady_overhead is None else steady_overhead <= TARGET_OVERHEAD,
    }


def _ensure_ray() -> bool:
    """Join or start Ray (before the checks: vLLM counts the cluster's GPUs); True when started here."""
    import ray

    if ray.is_initialized():
        return False
    from medray.runtime import init_ray

    init_ray()
    return True


def bench_synth_command(
        backend: str = typer.Option("auto", help="auto (vllm where vLLM and a GPU are present) | transformers | vllm"),
        model: Optional[str] = typer.Option(None, help="HF model folder, local or s3:// (default: a tiny local model)"),  # noqa: UP045
        prompts: str = typer.Option("256", help="A count of generated prompts, or a .txt / .jsonl file of prompts"),
        max_new_tokens: int = typer.Option(64, help="Tokens generated per prompt (EOS ignored: both sides do the same work)"),
        batch_size: int = typer.Option(16, help="Rows per generate call / engine batch"),
        concurrency: int = typer.Option(1, help="Actors (transformers) or vLLM replicas in the pipeline"),
        seed: int = typer.Option(0),
        out_path: Optional[str] = typer.Option(None, "--out", help="Also write the JSON here (local or s3://)"),  # noqa: UP045
) -> None:
    """Output tokens/s through the Ray Data pipeline beside the same engine called directly (target: <= 10% overhead)."""
    from medray import console as out

    with out.stdout_to_stderr():  # Ray and vLLM print to stdout: keep it for the JSON
        result = run_bench(backend, model, prompts, max_new_tokens, batch_size, concurrency, seed=seed,
                           progress=out.status)
    if out_path:
        from medray import storage

        storage.write_text(out_path, json.dumps(result, indent=2) + "\n")
    out.print_json(result)
