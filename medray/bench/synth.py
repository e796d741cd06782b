"""`medray bench synth`: output tokens/s through the Ray Data pipeline beside the same engine called directly.

Both sides run the same engine on the same prompts and model in one run:
vLLM (`ray.data.llm` replicas against `vllm.LLM.generate`) where vLLM and a
GPU are present, the `transformers` backend (an actor pool against
`HFEngine`, with the same CPU threads as one actor) elsewhere. Sampling is
greedy with `ignore_eos` and a fixed `max_new_tokens`, so both sides
generate exactly the same number of tokens (and, on `transformers`, the
same text: checked row by row) and the ratio of their rates is the cost of
the pipeline and nothing else.

Both sides start from nothing: the pipeline's actors start a process, import
the engine and load the model inside its timed run, so the direct engine
runs in a fresh Python process timed from its start (`synth_direct.py`),
with its start, load and generation reported apart; with several replicas
in the pipeline, as many engines run side by side on shares of the prompts,
each with one replica's CPUs or GPUs (GPUs: those of this machine). The pipeline runs
first: its actors are gone when it ends, so the direct engine then has the
device to itself. `pipeline_overhead` = 1 - pipeline tokens/s / direct
tokens/s; the target is at most 0.10.

Start-up is a fixed cost on both sides, so a small run on CPU sits above the
target however lean the pipeline is. The JSON therefore also gives the
steady state (the pipeline's blocks after its first beside the loaded
engine's rate), each side's fixed seconds, and the run size at which the
whole-run overhead reaches the target, projected from those four figures.
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

from medray.bench.synth_direct import child_envs, run_direct_process
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


def _blocks(table: pa.Table, cfg) -> list[pa.Table]:
    """Slices of `table`: two engine batches each, so the pipeline streams and its steady rate is measured
    over many arrivals (the first arrives late by about a block); at least four per actor, so that every
    actor of the pool gets work."""
    parts = min(512, max(cfg.concurrency * 4, math.ceil(table.num_rows / (cfg.batch_size * 2))))
    size = max(1, math.ceil(table.num_rows / parts))
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def _run_pipeline(table: pa.Table, cfg) -> tuple[dict, pa.Table]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    from medray.synth.engine import generate_dataset

    started = time.perf_counter()
    ds = generate_dataset(ray.data.from_arrow(_blocks(table, cfg)), cfg)
    batches, tokens, first_tokens = [], 0, 0
    first_at = None
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        batches.append(batch)
        tokens += int(pc.sum(batch.column("num_generated_tokens")).as_py() or 0)
        if first_at is None:
            first_at, first_tokens = time.perf_counter(), tokens
    ended = time.perf_counter()
    seconds = ended - started
    steady = (tokens - first_tokens) / (ended - first_at) if first_at is not None and ended > first_at else None
    out = pa.concat_tables(batches) if batches else table.slice(0, 0)
    return {"rows": out.num_rows, "output_tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 2),
            # actors started, model loaded, first block generated: the fixed part of the pipeline's cost
            "first_block_seconds": round(first_at - started, 3) if first_at is not None else None,
            "first_block_tokens": first_tokens,
            # the blocks after the first: the pipeline's rate once running (None with a single block)
            "steady_tokens_per_s": round(steady, 2) if steady and tokens > first_tokens else None}, out


def same_text_rows(pipeline: pa.Table, direct: pa.Table) -> int:
    """Rows (matched on `row`) whose generated text is the same on both sides."""
    mine = dict(zip(pipeline.column("row").to_pylist(), pipeline.column("generated_text").to_pylist()))
    return sum(mine.get(r) == t for r, t in zip(direct.column("row").to_pylist(),
                                                  direct.column("generated_text").to_pylist()))


def prompts_within_target(pipeline: dict, direct: dict, max_new_tokens: int, target: float = TARGET_OVERHEAD):
    """Prompts at which the whole-run overhead falls to `target`, projected from the measured rates.

    Each side is modelled as fixed seconds plus tokens at its steady rate:
    direct `D = Fd + N/rd`, pipeline `P = Fp + N/rp`; overhead <= t when
    `D >= (1 - t) P`. None when the steady pipeline is itself too slow.
    """
    rp, rd = pipeline.get("steady_tokens_per_s"), direct["generate_tokens_per_s"]
    if not rp or not rd:
        return None
    fixed_p, fixed_d = pipeline_fixed_seconds(pipeline), direct_fixed_seconds(direct)
    per_token = 1.0 / rd - (1.0 - target) / rp
    if per_token <= 0:
        return None
    tokens = max(0.0, ((1.0 - target) * fixed_p - fixed_d) / per_token)
    return math.ceil(tokens / max_new_tokens)


def direct_fixed_seconds(direct: dict) -> float:
    """The direct side's seconds before its first token: interpreter, imports, model load."""
    return round(direct["start_seconds"] + direct["load_seconds"], 3)


def pipeline_fixed_seconds(pipeline: dict) -> float | None:
    """The pipeline's seconds beyond its tokens at the steady rate: actor start, imports, load, first latency."""
    rate = pipeline.get("steady_tokens_per_s")
    return round(pipeline["seconds"] - pipeline["output_tokens"] / rate, 3) if rate else None


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
    scratch, started_ray = tempfile.mkdtemp(prefix="medray-bench-synth-"), False
    try:
        if model is None:
            from medray.synth.tiny_model import write_tiny_causal_lm

            progress("writing the tiny local model")
            cfg.model = write_tiny_causal_lm(f"{scratch}/tiny", seed=seed)
        cfg.check(prefix="", need_runtime=False)  # before Ray starts
        started_ray = _ensure_ray()
        cfg.check(prefix="")  # vLLM also counts the cluster's GPUs
        child_envs(cfg)  # the direct side's engines must fit this machine before the pipeline runs
        table = pa.table({"row": pa.array(range(len(texts)), pa.int64()), "prompt": pa.array(texts, pa.string())})
        progress(f"pipeline: {len(texts)} prompts x {max_new_tokens} tokens, {backend}, {concurrency} replica(s)")
        pipeline, piped = _run_pipeline(table, cfg)
        progress(f"direct: the same prompts through the {backend} engine in a fresh process")
        direct, direct_out = run_direct_process(table, cfg, f"{scratch}/direct")
    finally:
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
        "model": model or "tiny (written for this run)",
        "prompts": len(texts),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "output_tokens": direct["output_tokens"],
        "tokens_equal": pipeline["output_tokens"] == direct["output_tokens"],
        # greedy on both sides: the same text per row (vLLM may differ in a few rows through batch numerics)
        "same_text_rows": same_text_rows(piped, direct_out),
        "pipeline": pipeline,
        "direct": direct,
        "pipeline_overhead": round(overhead, 4),
        "target": TARGET_OVERHEAD,
        "within_target": overhead <= TARGET_OVERHEAD,
        # start-up excluded on both sides: the pipeline after its first block beside the loaded engine's rate
        "steady_state_overhead": steady_overhead,
        "steady_state_within_target": None if steady_overhead is None else steady_overhead <= TARGET_OVERHEAD,
        "fixed_seconds": {"pipeline": pipeline_fixed_seconds(pipeline),
                          "direct": direct_fixed_seconds(direct)},
        # where the whole-run overhead would reach the target at these rates (a projection, not a measurement)
        "projected_prompts_within_target": prompts_within_target(pipeline, direct, max_new_tokens),
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
