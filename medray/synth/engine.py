"""One LLM interface, two backends: `transformers` actors on CPU, vLLM through `ray.data.llm` on GPU.

Rows carry `prompt` (str) and optionally `seed` and `max_new_tokens`;
every backend adds the same four columns with the same types
(`generated_text` str, `num_input_tokens` int32, `num_generated_tokens`
int32, `finish_reason` "stop" | "length" | "prompt_too_long") and passes
the other columns through. A prompt that fills the model's context alone
gets no text and "prompt_too_long", for the caller's rejects: one long
row never stops a batch. Three ways to run, for three needs:

* `generate_table`: in this process, on an Arrow table. Plain function,
  no Ray: tests, small jobs, validators that regenerate a few items.
* `generate_dataset`: on a Ray Dataset. `transformers` runs a fixed pool of
  actors (`concurrency`), each loading the model once; vLLM runs the
  `ray.data.llm` processor with `concurrency` replicas of
  `tensor_parallel_size` GPUs each.
* `generate_direct`: the engine alone on a list of prompts, no Ray Data, as
  the benchmark's baseline (vLLM's offline `LLM.generate` on GPU).

The config is checked on the driver first, so a bad key or a vLLM run on a
machine without vLLM fails at once, naming the key.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from medray.synth.engine_settings import OUTPUT_FIELDS, EngineConfig, SamplingConfig

__all__ = ["EngineConfig", "SamplingConfig", "direct_engine", "generate_dataset", "generate_direct", "generate_table"]


def generate_table(table: pa.Table, cfg: EngineConfig) -> pa.Table:
    """`table` with the output columns added, generated in this process (vLLM: `vllm.LLM`)."""
    cfg.check()
    if cfg.backend == "vllm":
        return direct_engine(cfg).generate_table(table, cfg)
    from medray.synth.engine_hf import cached_engine

    return cached_engine(cfg).generate_table(table, cfg)


def direct_engine(cfg: EngineConfig):
    """A freshly loaded engine in this process with `generate_table(table, cfg=None)`: HF or `vllm.LLM`."""
    cfg.check()
    if cfg.backend == "vllm":
        from medray.synth.engine_vllm import VLLMDirect

        return VLLMDirect(cfg)
    from medray.synth.engine_hf import HFEngine

    return HFEngine(cfg)


def generate_direct(prompts: Sequence[str], cfg: EngineConfig) -> pa.Table:
    """The engine called directly on `prompts`: a table of `prompt` plus the output columns."""
    return direct_engine(cfg).generate_table(pa.table({"prompt": pa.array(list(prompts), pa.string())}), cfg)


def cast_outputs(batch: pa.Table) -> pa.Table:
    """The output columns at their contract types (Ray Data widens Python ints to int64)."""
    for f in OUTPUT_FIELDS:
        i = batch.schema.get_field_index(f.name)
        if i >= 0 and batch.schema.field(i).type != f.type:
            batch = batch.set_column(i, f, batch.column(i).cast(f.type))
    return batch


def generate_dataset(ds, cfg: EngineConfig):
    """`ds` (a Ray Dataset with a `prompt` column) with the output columns added, lazily."""
    cfg.check()
    if cfg.backend == "vllm":
        from medray.synth.engine_vllm import generate_dataset_vllm

        return generate_dataset_vllm(ds, cfg).map_batches(cast_outputs, batch_format="pyarrow", zero_copy_batch=True)
    from ray.data import ActorPoolStrategy

    from medray.synth.engine_hf import HFActor

    return ds.map_batches(
        HFActor, fn_constructor_args=(cfg,), batch_format="pyarrow", batch_size=cfg.batch_size,
        compute=ActorPoolStrategy(size=cfg.concurrency), num_cpus=cfg.cpus_per_actor,
        num_gpus=1 if cfg.device == "cuda" else 0,
    )
