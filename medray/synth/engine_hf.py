"""The `transformers` backend: batched `generate` with a seed per row, on CPU or one GPU.

Why a logits processor does the sampling: `generate` draws from the global
RNG, so a row's text would depend on which rows share its batch and in what
order. Here `generate` runs greedy and `RowSampler`, the last processor,
applies temperature and top-p and draws each row's token from that row's own
`torch.Generator`, leaving only the drawn token finite. A row's text is then
a function of its prompt and seed alone, the same in a notebook, in an actor
pool and in a rerun, which is what multi-expert sampling (one engine, several
seeds) and reproducible synthesis rely on. Temperature 0 is plain greedy.

Rows are left-padded and grouped by their `max_new_tokens` within a batch;
`ignore_eos` becomes `min_new_tokens = max_new_tokens`, so every row
generates exactly that many tokens. Token counts follow vLLM's: the input
counts the templated prompt as tokenised, the output counts the stop token
when one ended the row, and the text leaves it out.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import pyarrow as pa

from medray.errors import MedrayError
from medray.synth.engine_settings import OUTPUT_COLUMNS, OUTPUT_FIELDS, EngineConfig


def chat_prompt(tokenizer, prompt: str) -> str:
    """`prompt` as one user turn in the tokenizer's chat template, ready for the assistant's answer."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def read_rows(table: pa.Table, cfg: EngineConfig) -> tuple[list[str], list[int], list[int]]:
    """(prompts, seeds, max_new_tokens) per row; a null seed or limit falls back to `cfg.sampling`."""
    if "prompt" not in table.column_names:
        raise MedrayError(f"the engine needs a 'prompt' column; got {table.column_names}")
    prompts = table.column("prompt").to_pylist()
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise MedrayError(f"row {i}: prompt must be a string, got {type(prompt).__name__}")

    def per_row(name: str, default: int) -> list[int]:
        if name not in table.column_names:
            return [default] * len(prompts)
        values = [default if v is None else int(v) for v in table.column(name).to_pylist()]
        bad = next((i for i, v in enumerate(values) if v < (1 if name == "max_new_tokens" else 0)), None)
        if bad is not None:
            raise MedrayError(f"row {bad}: {name} {values[bad]} is out of range")
        return values

    return prompts, per_row("seed", cfg.sampling.seed), per_row("max_new_tokens", cfg.sampling.max_new_tokens)


def with_outputs(table: pa.Table, columns: dict[str, list]) -> pa.Table:
    """`table` with the engine's output columns set (replacing any of the same name)."""
    for name in OUTPUT_COLUMNS:
        if name in table.column_names:
            table = table.drop_columns([name])
    for f in OUTPUT_FIELDS:
        table = table.append_column(f, pa.array(columns[f.name], type=f.type))
    return table


def _row_sampler_class():
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        """Temperature + top-p, then one draw per row from that row's generator; the drawn token alone stays finite."""

        def __init__(self, generators: list, temperature: float, top_p: float):
            self.generators, self.temperature, self.top_p = generators, temperature, top_p

        def __call__(self, input_ids, scores):
            if self.temperature == 0:
                return scores
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)
            if self.top_p < 1.0:
                ordered, order = probs.sort(dim=-1, descending=True)
                drop = ordered.cumsum(dim=-1) - ordered >= self.top_p  # the top token always stays
                probs = probs.scatter(-1, order, ordered.masked_fill(drop, 0.0))
            picks = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
            out = torch.full_like(scores, float("-inf"))
            return out.scatter(-1, picks[:, None], 0.0)

    return RowSampler


@contextmanager
def cpu_threads(device: str, cpus: float):
    """Torch threads = the CPUs an actor is given, also in this process, restored after.

    A small model spread over more threads than it has cores (shared
    machines, a busy driver) runs many times slower, and the in-process and
    actor runs should do the same work with the same means.
    """
    import torch

    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


PROMPT_TOO_LONG = "prompt_too_long"  # no text generated: the prompt leaves no room under max_model_len


class HFEngine:
    """One model and tokenizer in this process; `generate_table` adds the output columns to a table."""

    def __init__(self, cfg: EngineConfig):
        import torch

        from medray.models.causal_lm import ModelConfig, load_causal_lm

        self.cfg = cfg
        cuda = torch.cuda.is_available()
        self.device = ("cuda" if cuda else "cpu") if cfg.device == "auto" else cfg.device
        if self.device == "cuda" and not cuda:
            raise MedrayError("engine.device is cuda but torch sees no CUDA device here")
        dtype = ("bfloat16" if self.device == "cuda" else "float32") if cfg.dtype == "auto" else cfg.dtype
        self.model, self.tokenizer = load_causal_lm(
            ModelConfig(path=cfg.model, tokenizer=cfg.tokenizer, dtype=dtype), device=self.device)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        ids = list(eos) if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos])
        self.stop_ids = sorted(set(ids) | {self.tokenizer.eos_token_id})
        self._sampler = _row_sampler_class()

    def max_len(self, cfg: EngineConfig) -> int:
        return cfg.max_model_len or int(getattr(self.model.config, "max_position_embeddings", 2048))

    def encode(self, prompts: list[str], chat: bool) -> list[list[int]]:
        """Token ids per prompt, templated first when `chat` (the config's `apply_chat_template`)."""
        texts = [chat_prompt(self.tokenizer, p) for p in prompts] if chat else prompts
        return [list(ids) for ids in self.tokenizer(texts)["input_ids"]] if texts else []

    def generate_table(self, table: pa.Table, cfg: EngineConfig | None = None) -> pa.Table:
        """`table` with the output columns added; `cfg` (default: the loading one) gives batching and sampling."""
        cfg = cfg or self.cfg
        prompts, seeds, limits = read_rows(table, cfg)
        ids = self.encode(prompts, cfg.apply_chat_template)
        max_len = self.max_len(cfg)
        for i, row in enumerate(ids):
            limits[i] = min(limits[i], max_len - len(row))  # < 1: the prompt alone fills the context
        out = {"generated_text": [""] * len(ids), "num_input_tokens": [len(r) for r in ids],
               "num_generated_tokens": [0] * len(ids),
               "finish_reason": [PROMPT_TOO_LONG if limit < 1 else "" for limit in limits]}
        size = cfg.batch_size
        for start in range(0, len(ids), size):
            groups: dict[int, list[int]] = defaultdict(list)
            for i in range(start, min(start + size, len(ids))):
                if limits[i] >= 1:
                    groups[limits[i]].append(i)
            for limit, rows in groups.items():
                for i, (text, count, reason) in zip(rows, self._generate([ids[i] for i in rows], [seeds[i] for i in rows], limit, cfg)):
                    out["generated_text"][i], out["num_generated_tokens"][i], out["finish_reason"][i] = text, count, reason
        return with_outputs(table, out)

    def _generate(self, rows: list[list[int]], seeds: list[int], max_new: int, cfg: EngineConfig) -> list[tuple[str, int, str]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        pad = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        sampling = cfg.sampling
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        gen_cfg = GenerationConfig(max_new_tokens=max_new, min_new_tokens=max_new if sampling.ignore_eos else None,
                                   do_sample=False, eos_token_id=self.stop_ids, pad_token_id=pad)
        sampler = self._sampler(generators, sampling.temperature, sampling.top_p)
        with torch.inference_mode(), cpu_threads(self.device, cfg.cpus_per_actor):
            generated = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen_cfg,
                                            logits_processor=LogitsProcessorList([sampler]))[:, width:].tolist()
        results = []
        stop = set(self.stop_ids)
        for tokens in generated:
            end = next((j for j, t in enumerate(tokens) if t in stop), None)
            kept = tokens if end is None else tokens[:end]
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            results.append((text, len(kept) if end is None else end + 1, "length" if end is None else "stop"))
        return results


_ENGINES: dict[tuple, HFEngine] = {}


def cached_engine(cfg: EngineConfig) -> HFEngine:
    """The in-process engine for `cfg`'s model, loaded on first use: repeated calls load the model once."""
    key = (cfg.model, cfg.tokenizer, cfg.dtype, cfg.device)
    if key not in _ENGINES:
        _ENGINES.clear()  # hold one model at a time
        _ENGINES[key] = HFEngine(cfg)
    return _ENGINES[key]


class HFActor:
    """The Ray Data stage: loads the model once when the actor starts, then generates per batch."""

    def __init__(self, cfg: EngineConfig):
        self.engine = HFEngine(cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.engine.generate_table(batch)
