"""The LLM engines: the real `transformers` backend on CPU with a tiny local model, in process and on Ray.

Nothing is mocked. The model is built from config and trained for a few
steps by `write_tiny_causal_lm` (so it writes report-like text and stops on
its own); Ray is the session's local cluster. The vLLM tests are marked
`gpu` and skip, saying why, where vLLM or a CUDA GPU is missing; the
processor's pre/postprocess functions are ours and run here on rows shaped
as `ray.data.llm` hands them over, and Ray's real `build_processor` builds
the vLLM pipeline from our config here (vLLM loads only when a replica
starts).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import ray
from transformers import AutoTokenizer

from medray.config import load_config
from medray.errors import ConfigError, MedrayError
from medray.synth.engine import generate_dataset, generate_direct, generate_table
from medray.synth.engine_settings import EngineConfig, SamplingConfig, vllm_problem
from medray.synth.engine_vllm import (
    COLUMNS_KEY,
    LIMIT_KEY,
    PROMPT_KEY,
    postprocess_row,
    preprocess_row,
)
from medray.synth.tiny_model import CHAT_QUESTION, write_tiny_causal_lm

PROMPTS = ["Findings: small left pleural effusion", "Impression", "There is cardiomegaly on the chest X-ray",
           "Compared with the prior CT of the chest", "Portable AP chest radiograph shows"]
INT32_COLUMNS = ("num_input_tokens", "num_generated_tokens")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return write_tiny_causal_lm(str(tmp_path_factory.mktemp("engine") / "tiny"), seed=0)


def engine(model: str, **sampling) -> EngineConfig:
    return EngineConfig(model=model, batch_size=4, sampling=SamplingConfig(**{"max_new_tokens": 16, **sampling}))


def rows(table: pa.Table) -> dict:
    return {r["id"]: r for r in table.to_pylist()}


def test_columns_types_and_passthrough(tiny_model):
    from transformers import AutoTokenizer

    table = pa.table({"id": list(range(len(PROMPTS))), "prompt": PROMPTS, "node": ["T:pe"] * len(PROMPTS)})
    out = generate_table(table, engine(tiny_model, temperature=0.0, max_new_tokens=12))
    assert out.column_names == ["id", "prompt", "node", "generated_text", "num_input_tokens",
                                "num_generated_tokens", "finish_reason"]
    assert out.schema.field("generated_text").type == pa.string()
    assert all(out.schema.field(c).type == pa.int32() for c in INT32_COLUMNS)
    assert out.column("id").to_pylist() == list(range(len(PROMPTS))) and out.column("prompt").to_pylist() == PROMPTS
    tok = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    assert out.column("num_input_tokens").to_pylist() == [len(tok(p)["input_ids"]) for p in PROMPTS]
    for r in out.to_pylist():
        assert r["finish_reason"] in ("stop", "length")
        if r["finish_reason"] == "length":
            assert r["num_generated_tokens"] == 12
        else:  # the stop token is counted, not written
            assert 1 <= r["num_generated_tokens"] <= 12
            assert len(tok(r["generated_text"])["input_ids"]) <= r["num_generated_tokens"]
    assert set(out.column("finish_reason").to_pylist()) == {"stop", "length"}  # the trained tiny model ends some rows itself
    empty = generate_table(table.slice(0, 0), engine(tiny_model))
    assert empty.num_rows == 0 and empty.schema == out.schema


def test_seed_decides_the_text_at_temperature_and_greedy_ignores_it(tiny_model):
    prompt = PROMPTS[3]
    seeds = [1, 1, 2, 3, 4, 5]
    table = pa.table({"id": list(range(6)), "prompt": [prompt] * 6, "seed": seeds})
    sampled = generate_table(table, engine(tiny_model, temperature=1.0)).column("generated_text").to_pylist()
    assert sampled[0] == sampled[1]
    assert len(set(sampled[1:])) >= 4  # five seeds, (almost) five texts
    greedy = generate_table(table, engine(tiny_model, temperature=0.0)).column("generated_text").to_pylist()
    assert len(set(greedy)) == 1
    # a row's text does not depend on the rows batched with it
    alone = generate_table(pa.table({"prompt": [prompt], "seed": [3]}), engine(tiny_model, temperature=1.0))
    assert alone.column("generated_text")[0].as_py() == sampled[3]


def test_top_p_narrows_the_draws(tiny_model):
    table = pa.table({"prompt": [PROMPTS[1]] * 6, "seed": list(range(6))})
    narrow = generate_table(table, engine(tiny_model, temperature=1.0, top_p=1e-6)).column("generated_text").to_pylist()
    greedy = generate_table(table, engine(tiny_model, temperature=0.0)).column("generated_text").to_pylist()
    assert narrow == greedy  # only the top token survives a tiny top_p


def test_max_new_tokens_per_row_and_ignore_eos(tiny_model):
    table = pa.table({"prompt": PROMPTS[:3], "max_new_tokens": [3, None, 5]})
    out = generate_table(table, engine(tiny_model, temperature=1.0, max_new_tokens=9, ignore_eos=True))
    assert out.column("num_generated_tokens").to_pylist() == [3, 9, 5]
    assert out.column("finish_reason").to_pylist() == ["length"] * 3
    capped = generate_table(table.drop_columns(["max_new_tokens"]), EngineConfig(model=tiny_model, max_model_len=24,
                                                sampling=SamplingConfig(max_new_tokens=50, ignore_eos=True)))
    assert [a + b for a, b in zip(*(capped.column(c).to_pylist() for c in INT32_COLUMNS))] == [24, 24, 24]
    mixed = pa.table({"prompt": [PROMPTS[1], PROMPTS[2]]})  # a long prompt is marked for rejects, the rest generate
    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(tiny_model)(mixed.column("prompt").to_pylist())["input_ids"]]
    limit = lengths[0] + 4
    assert lengths[1] >= limit
    out = generate_table(mixed, EngineConfig(model=tiny_model, max_model_len=limit,
                                             sampling=SamplingConfig(max_new_tokens=50, ignore_eos=True)))
    assert out.column("finish_reason").to_pylist() == ["length", "prompt_too_long"]
    assert out.column("num_generated_tokens").to_pylist() == [4, 0] and out.column("generated_text")[1].as_py() == ""


def test_chat_template_wraps_the_prompt(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    cfg = engine(tiny_model, max_new_tokens=24)
    cfg.apply_chat_template = True
    out = generate_table(pa.table({"prompt": [CHAT_QUESTION]}), cfg).to_pylist()[0]
    templated = tok.apply_chat_template([{"role": "user", "content": CHAT_QUESTION}], tokenize=False, add_generation_prompt=True)
    assert templated.endswith("<|im_start|>assistant\n")
    assert out["num_input_tokens"] == len(tok(templated)["input_ids"])
    assert out["finish_reason"] == "stop" and out["generated_text"].strip()  # trained to answer and close the turn


def test_dataset_on_actors_matches_the_table(tiny_model, ray_local):
    import ray

    n = 10
    table = pa.table({"id": list(range(n)), "prompt": [PROMPTS[i % len(PROMPTS)] for i in range(n)],
                      "seed": [i % 3 for i in range(n)]})
    cfg = engine(tiny_model, temperature=1.0)
    cfg.batch_size = 3  # batches other than the in-process run's (4): rows do not depend on their batch
    expected = rows(generate_table(table, engine(tiny_model, temperature=1.0)))
    halves = [table.slice(0, n // 2), table.slice(n // 2)]
    got_ds = generate_dataset(ray.data.from_arrow(halves), cfg).materialize()
    schema = got_ds.schema()
    assert dict(zip(schema.names, schema.types))["num_generated_tokens"] == pa.int32()
    got = rows(pa.concat_tables(list(got_ds.iter_batches(batch_format="pyarrow"))))
    assert got == expected


def test_generate_direct_is_the_same_engine(tiny_model):
    cfg = engine(tiny_model, temperature=0.7, seed=11)
    direct = generate_direct(PROMPTS, cfg)
    table = generate_table(pa.table({"prompt": PROMPTS}), cfg)
    assert direct.to_pylist() == table.to_pylist()


def test_model_from_s3_is_fetched_and_generates_the_same(tiny_model, s3_prefix, tmp_path, monkeypatch):
    from medray import storage
    from medray.models.hf_io import SAVE_MARKER, is_saved

    monkeypatch.setenv("MEDRAY_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"{s3_prefix}/tiny"
    for path in sorted(Path(tiny_model).iterdir(), key=lambda p: p.name == SAVE_MARKER):  # the marker last
        storage.atomic_write_bytes(storage.join(uri, path.name), path.read_bytes())
    assert is_saved(uri)
    table = pa.table({"prompt": PROMPTS[:2]})
    remote = generate_table(table, engine(uri, temperature=1.0, seed=2))
    local = generate_table(table, engine(tiny_model, temperature=1.0, seed=2))
    assert remote.to_pylist() == local.to_pylist()
    assert any((tmp_path / "cache" / "models").iterdir())  # weights came through the local cache


def test_config_errors_name_the_key(tiny_model, tmp_path):
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model, no_template)
    (no_template / "chat_template.jinja").unlink()
    cases = [
        (EngineConfig(model=tiny_model, backend="tgi"), "engine.backend", "transformers, vllm"),
        (EngineConfig(model=""), "engine.model", "no model"),
        (EngineConfig(model=str(tmp_path / "missing")), "engine.model", "config.json"),
        (EngineConfig(model=tiny_model, batch_size=0), "engine.batch_size", "at least 1"),
        (EngineConfig(model=tiny_model, concurrency=0), "engine.concurrency", "at least 1"),
        (EngineConfig(model=tiny_model, dtype="int4"), "engine.dtype", "bfloat16"),
        (EngineConfig(model=tiny_model, tensor_parallel_size=2), "engine.tensor_parallel_size", "vllm"),
        (EngineConfig(model=tiny_model, sampling=SamplingConfig(top_p=1.5)), "engine.sampling.top_p", "(0, 1]"),
        (EngineConfig(model=tiny_model, sampling=SamplingConfig(temperature=-1)), "engine.sampling.temperature", "at least 0"),
        (EngineConfig(model=tiny_model, sampling=SamplingConfig(max_new_tokens=0)), "engine.sampling.max_new_tokens", "at least 1"),
        (EngineConfig(model=str(no_template), apply_chat_template=True), "engine.apply_chat_template", "no chat template"),
    ]
    for cfg, key, text in cases:
        with pytest.raises(ConfigError) as err:
            cfg.check()
        assert err.value.key == key and text in str(err.value), (key, str(err.value))
    if vllm_problem() is not None:  # this machine cannot run vLLM: the refusal names the backend and why
        with pytest.raises(ConfigError) as err:
            generate_table(pa.table({"prompt": ["x"]}), EngineConfig(model=tiny_model, backend="vllm"))
        assert err.value.key == "engine.backend" and "vllm cannot run here" in str(err.value)
    with pytest.raises(MedrayError, match="'prompt' column"):
        generate_table(pa.table({"text": ["x"]}), EngineConfig(model=tiny_model))
    with pytest.raises(MedrayError, match="row 1: prompt must be a string"):
        generate_table(pa.table({"prompt": ["x", None]}), EngineConfig(model=tiny_model))


def test_yaml_and_overrides_load_into_the_config(tiny_model, tmp_path):
    conf = tmp_path / "engine.yaml"
    conf.write_text(f"backend: transformers\nmodel: {tiny_model}\nsampling:\n  temperature: 0.5\n")
    cfg = load_config(EngineConfig, conf, ["sampling.seed=9", "concurrency=3"])
    assert (cfg.sampling.temperature, cfg.sampling.seed, cfg.concurrency, cfg.batch_size) == (0.5, 9, 3, 16)
    assert cfg.check() is cfg
    with pytest.raises(ConfigError) as err:
        load_config(EngineConfig, conf, ["sampling.temprature=1"])
    assert err.value.key == "sampling.temprature"


def test_vllm_rows_map_to_our_columns_and_back():
    """The processor's pre/postprocess on rows shaped as ray.data.llm passes them (no vLLM needed)."""
    cfg = EngineConfig(model="unused", apply_chat_template=True, sampling=SamplingConfig(max_new_tokens=8, temperature=0.5, seed=4))
    row = {"id": 3, "prompt": "Describe the effusion", "seed": None, "max_new_tokens": 5}
    pre = preprocess_row(row, cfg)
    assert pre["messages"] == [{"role": "user", "content": "Describe the effusion"}] and "prompt" not in pre
    assert pre["sampling_params"] == {"max_tokens": 5, "temperature": 0.5, "top_p": 1.0, "seed": 4, "ignore_eos": False}
    assert preprocess_row({**row, "seed": 9}, cfg)["sampling_params"]["seed"] == 9
    # what the engine stages add: the templated prompt replaces ours, tokens and text are appended
    after = {**row, **pre, "prompt": "<|im_start|>user\nDescribe the effusion<|im_end|>\n<|im_start|>assistant\n",
             "tokenized_prompt": [5, 6, 7], "num_input_tokens": 3, "generated_tokens": [40, 41, 3],
             "generated_text": "fluid", "num_generated_tokens": 3, "metrics": {}}
    out = postprocess_row(after, stop_ids=(0, 3), ignore_eos=False)
    assert out == {"id": 3, "prompt": "Describe the effusion", "seed": None, "max_new_tokens": 5, "generated_text": "fluid",
                   "num_input_tokens": 3, "num_generated_tokens": 3, "finish_reason": "stop"}
    full = {**after, "generated_tokens": [40, 41, 42, 43, 44], "num_generated_tokens": 5}
    assert postprocess_row(full, stop_ids=(0, 3), ignore_eos=False)["finish_reason"] == "length"
    ended_on_eos = {**full, "generated_tokens": [40, 41, 42, 43, 0]}
    assert postprocess_row(ended_on_eos, stop_ids=(0, 3), ignore_eos=True)["finish_reason"] == "length"
    assert {PROMPT_KEY, COLUMNS_KEY, LIMIT_KEY}.isdisjoint(out)


def test_vllm_processor_is_built_by_ray_data_llm_from_our_config(tiny_model, ray_local):
    """Ray's own `build_processor` on our config and hooks, on CPU.

    vLLM is imported only when a replica starts, so Ray 2.60's processor
    (its config validation, its stages and their settings) is exercised here
    although nothing generates: a renamed or refused setting fails on CPU.
    """
    from ray.data.llm import build_processor

    from medray.synth.engine_vllm import generate_dataset_vllm, processor_config

    for chat in (False, True):
        cfg = EngineConfig(model=tiny_model, backend="vllm", tensor_parallel_size=2, concurrency=3, batch_size=8,
                           max_model_len=256, apply_chat_template=chat, gpu_memory_utilization=0.6)
        processor = build_processor(processor_config(cfg))
        assert processor.list_stage_names() == ["ChatTemplateStage"] * chat + ["TokenizeStage", "vLLMEngineStage",
                                                                                "DetokenizeStage"]
        engine_stage = processor.get_stage_by_name("vLLMEngineStage")
        kwargs = engine_stage.fn_constructor_kwargs
        assert kwargs["model"] == tiny_model and kwargs["batch_size"] == 8
        assert {k: kwargs["engine_kwargs"][k] for k in ("tensor_parallel_size", "max_model_len", "gpu_memory_utilization")} \
            == {"tensor_parallel_size": 2, "max_model_len": 256, "gpu_memory_utilization": 0.6}
        pool = engine_stage.map_batches_kwargs["compute"]
        assert (pool.min_size, pool.max_size) == (3, 3)  # concurrency: a fixed pool of 3 replicas
    plan = str(generate_dataset_vllm(ray.data.from_items([{"id": 0, "prompt": "x"}]), cfg))  # lazy: nothing runs
    stages = ["Map(_preprocess)", "MapBatches(ChatTemplateUDF)", "MapBatches(TokenizeUDF)",
              "MapBatches(vLLMEngineStageUDF)", "MapBatches(DetokenizeUDF)", "Map(_postprocess)"]
    assert [plan.index(s) for s in stages] == sorted((plan.index(s) for s in stages), reverse=True)  # outermost last


# ---- vLLM on a GPU ---------------------------------------------------------------------------


def _need_vllm() -> None:
    problem = vllm_problem()
    if problem:
        pytest.skip(f"vLLM backend not exercised: {problem}")


@pytest.mark.gpu
def test_vllm_pipeline_and_direct_agree(tiny_model, ray_local):
    import ray

    _need_vllm()
    cfg = EngineConfig(model=tiny_model, backend="vllm", batch_size=8, gpu_memory_utilization=0.3,
                       sampling=SamplingConfig(max_new_tokens=16, temperature=1.0, seed=5))
    prompts = [PROMPTS[0]] * 4 + [PROMPTS[1]] * 4
    table = pa.table({"id": list(range(8)), "prompt": prompts, "seed": [1, 1, 2, 3] * 2})
    direct = rows(generate_table(table, cfg))
    piped_ds = generate_dataset(ray.data.from_arrow(table), cfg)
    piped = rows(pa.concat_tables(list(piped_ds.iter_batches(batch_format="pyarrow"))))
    assert set(piped) == set(range(8)) and piped_ds.schema().names[-4:] == ["generated_text", "num_input_tokens",
                                                                            "num_generated_tokens", "finish_reason"]
    for i, r in piped.items():
        assert (r["prompt"], r["seed"]) == (prompts[i], [1, 1, 2, 3][i % 4])  # input columns come back unchanged
        assert r["num_input_tokens"] == direct[i]["num_input_tokens"]
        assert r["finish_reason"] in ("stop", "length") and 1 <= r["num_generated_tokens"] <= 16
    for first, second in ((0, 1), (4, 5)):  # same prompt, same seed: same text
        assert piped[first]["generated_text"] == piped[second]["generated_text"]
        assert direct[first]["generated_text"] == direct[second]["generated_text"]


@pytest.mark.gpu
def test_vllm_ignore_eos_generates_exactly_the_limit(tiny_model):
    _need_vllm()
    cfg = EngineConfig(model=tiny_model, backend="vllm", gpu_memory_utilization=0.3,
                       sampling=SamplingConfig(max_new_tokens=7, ignore_eos=True))
    out = generate_direct(PROMPTS, cfg)
    assert out.column("num_generated_tokens").to_pylist() == [7] * len(PROMPTS)
    assert out.column("finish_reason").to_pylist() == ["length"] * len(PROMPTS)
