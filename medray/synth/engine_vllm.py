"""The vLLM backend: `ray.data.llm` replicas for datasets, `vllm.LLM` in process for direct calls.

vLLM and `ray.data.llm` import inside the functions: neither is needed (nor,
for vLLM, installed) on a CPU machine, and the module must import there.

Dataset path: `vLLMEngineProcessorConfig` + `build_processor`. Our `prompt`
becomes vLLM's `prompt` (or one user turn in `messages` when the chat
template applies), each row gets its own `sampling_params` with its seed
and limit, and the postprocess maps vLLM's columns back to ours. The
processor carries every input column through to the postprocess but its
stages overwrite `prompt` with the templated text, so the original prompt
and the input column names travel in two private keys and the postprocess
rebuilds the row from them. vLLM reports no finish reason per row, so it is
derived as vLLM's offline `LLM.generate` does: "stop" when the last token
is a stop id (and EOS is not ignored), "length" when the limit was reached.
A model at `s3://` goes to the processor as is: Ray downloads it on each
node that runs a replica.
"""

from __future__ import annotations

import functools
import json

import pyarrow as pa

from medray import storage
from medray.synth.engine_hf import chat_prompt, read_rows, with_outputs
from medray.synth.engine_settings import EngineConfig

PROMPT_KEY = "__medray_prompt"
COLUMNS_KEY = "__medray_columns"
LIMIT_KEY = "__medray_max_tokens"


def sampling_params(cfg: EngineConfig, seed: int, max_new_tokens: int) -> dict:
    """vLLM `SamplingParams` keyword arguments for one row."""
    s = cfg.sampling
    return {"max_tokens": int(max_new_tokens), "temperature": float(s.temperature), "top_p": float(s.top_p),
            "seed": int(seed), "ignore_eos": bool(s.ignore_eos)}


def stop_token_ids(model: str, tokenizer: str | None = None) -> list[int]:
    """The model's stop ids: `generation_config.json`'s EOS ids and the tokenizer's EOS."""
    ids: list[int] = []
    for folder, name, key in ((model, "generation_config.json", "eos_token_id"), (model, "config.json", "eos_token_id")):
        try:
            value = json.loads(storage.read_text(storage.join(folder, name))).get(key)
        except Exception:  # an absent or unreadable file names no stop ids
            continue
        ids += value if isinstance(value, list) else ([] if value is None else [value])
    try:
        from medray.data.tokenizer import load_tokenizer

        eos = load_tokenizer(tokenizer or model).eos_token_id
        if eos is not None:
            ids.append(eos)
    except Exception:  # no loadable tokenizer: the config files' ids stand alone
        pass
    return sorted(set(int(i) for i in ids))


def finish_reason(tokens, limit: int, stop_ids: set[int], ignore_eos: bool) -> str:
    tokens = list(tokens)
    if tokens and not ignore_eos and int(tokens[-1]) in stop_ids:
        return "stop"
    return "length" if len(tokens) >= limit else "stop"


def preprocess_row(row: dict, cfg: EngineConfig) -> dict:
    """Our row -> the processor's input: prompt or messages, per-row sampling, and what the postprocess restores."""
    seed = cfg.sampling.seed if row.get("seed") is None else int(row["seed"])
    limit = cfg.sampling.max_new_tokens if row.get("max_new_tokens") is None else int(row["max_new_tokens"])
    out = {PROMPT_KEY: row["prompt"], COLUMNS_KEY: list(row.keys()), LIMIT_KEY: limit,
           "sampling_params": sampling_params(cfg, seed, limit)}
    if cfg.apply_chat_template:
        out["messages"] = [{"role": "user", "content": row["prompt"]}]
    else:
        out["prompt"] = row["prompt"]
    return out


def postprocess_row(row: dict, stop_ids: tuple[int, ...], ignore_eos: bool) -> dict:
    """The processor's output -> the input columns (original prompt) plus ours."""
    out = {name: row[name] for name in row[COLUMNS_KEY]}
    out["prompt"] = row[PROMPT_KEY]
    tokens = row.get("generated_tokens")
    tokens = [] if tokens is None else list(tokens)
    out["generated_text"] = row.get("generated_text") or ""
    out["num_input_tokens"] = int(row["num_input_tokens"])
    out["num_generated_tokens"] = int(row.get("num_generated_tokens") or len(tokens))
    out["finish_reason"] = finish_reason(tokens, int(row[LIMIT_KEY]), set(stop_ids), ignore_eos)
    return out


def processor_config(cfg: EngineConfig):
    """The `ray.data.llm` processor config for `cfg`: replicas, tensor parallelism, stages, engine settings."""
    from ray.data.llm import vLLMEngineProcessorConfig

    engine_kwargs = {"tensor_parallel_size": cfg.tensor_parallel_size, "dtype": cfg.dtype,
                     "gpu_memory_utilization": cfg.gpu_memory_utilization}
    if cfg.max_model_len is not None:
        engine_kwargs["max_model_len"] = cfg.max_model_len
    if cfg.tokenizer:
        engine_kwargs["tokenizer"] = cfg.tokenizer
    tok = cfg.tokenizer_path
    return vLLMEngineProcessorConfig(
        # (n, n): a fixed pool of n replicas, as the transformers backend's; an int would autoscale from 1
        model_source=cfg.model, engine_kwargs=engine_kwargs, batch_size=cfg.batch_size,
        concurrency=(cfg.concurrency, cfg.concurrency),
        chat_template_stage={"enabled": cfg.apply_chat_template, "model_source": tok},
        tokenize_stage={"enabled": True, "model_source": tok},
        detokenize_stage={"enabled": True, "model_source": tok},
    )


def generate_dataset_vllm(ds, cfg: EngineConfig):
    """`ds` through vLLM replicas; rows come back with the output columns added."""
    from ray.data.llm import build_processor

    stops = tuple(stop_token_ids(cfg.model, cfg.tokenizer))
    processor = build_processor(
        processor_config(cfg),
        preprocess=functools.partial(preprocess_row, cfg=cfg),
        postprocess=functools.partial(postprocess_row, stop_ids=stops, ignore_eos=cfg.sampling.ignore_eos),
    )
    return processor(ds)


class VLLMDirect:
    """`vllm.LLM` in this process, for direct calls and the benchmark's baseline."""

    def __init__(self, cfg: EngineConfig):
        from vllm import LLM

        from medray.models.hf_io import local_model_dir

        self.cfg = cfg
        kwargs = {"tensor_parallel_size": cfg.tensor_parallel_size, "dtype": cfg.dtype,
                  "gpu_memory_utilization": cfg.gpu_memory_utilization, "seed": cfg.sampling.seed}
        if cfg.max_model_len is not None:
            kwargs["max_model_len"] = cfg.max_model_len
        if cfg.tokenizer:
            from medray.data.tokenizer import local_tokenizer_dir

            kwargs["tokenizer"] = str(local_tokenizer_dir(cfg.tokenizer))
        self.llm = LLM(model=str(local_model_dir(cfg.model)), **kwargs)

    def generate_table(self, table: pa.Table, cfg: EngineConfig | None = None) -> pa.Table:
        from vllm import SamplingParams

        cfg = cfg or self.cfg
        prompts, seeds, limits = read_rows(table, cfg)
        if cfg.apply_chat_template:
            tokenizer = self.llm.get_tokenizer()
            prompts = [chat_prompt(tokenizer, p) for p in prompts]
        params = [SamplingParams(**sampling_params(cfg, s, m)) for s, m in zip(seeds, limits)]
        results = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        out: dict[str, list] = {"generated_text": [], "num_input_tokens": [], "num_generated_tokens": [], "finish_reason": []}
        for result in results:
            first = result.outputs[0]
            out["generated_text"].append(first.text)
            out["num_input_tokens"].append(len(result.prompt_token_ids))
            out["num_generated_tokens"].append(len(first.token_ids))
            out["finish_reason"].append("length" if first.finish_reason == "length" else "stop")
        return with_outputs(table, out)
