"""`medray bench synth`: the Ray Data pipeline beside the same engine called directly, on real components.

The `transformers` backend with the tiny local model the benchmark writes
for itself, on the session's local Ray cluster. The `gpu` test runs vLLM on
both sides where vLLM and a CUDA GPU are present and skips, saying why,
elsewhere.
"""

from __future__ import annotations

import json
import math

import pytest

from medray.bench.synth import (
    bench_prompts,
    pipeline_fixed_seconds,
    prompts_within_target,
    read_prompts,
    run_bench,
    same_text_rows,
)
from medray.errors import ConfigError, MedrayError
from medray.synth.engine_settings import vllm_problem

QUIET = {"progress": lambda message: None}


@pytest.fixture(scope="module")
def tiny_run(ray_local) -> dict:
    # two actors in the pipeline, so two engines side by side on the direct side
    return run_bench("transformers", None, prompts=12, max_new_tokens=6, batch_size=4, concurrency=2, **QUIET)


def test_both_sides_generate_the_same_tokens(tiny_run):
    assert (tiny_run["backend"], tiny_run["device"], tiny_run["prompts"]) == ("transformers", "cpu", 12)
    pipeline, direct = tiny_run["pipeline"], tiny_run["direct"]
    assert pipeline["rows"] == direct["rows"] == 12 and direct["engines"] == tiny_run["concurrency"] == 2
    assert pipeline["output_tokens"] == direct["output_tokens"] == tiny_run["output_tokens"] == 12 * 6  # EOS ignored
    assert tiny_run["tokens_equal"] is True
    assert tiny_run["same_text_rows"] == 12  # greedy, per-row seeds: the pipeline wrote what the engine writes
    assert tiny_run["model"] == "tiny (written for this run)"


def test_rates_and_overhead_come_from_the_timings(tiny_run):
    pipeline, direct = tiny_run["pipeline"], tiny_run["direct"]
    assert pipeline["tokens_per_s"] == pytest.approx(72 / pipeline["seconds"], rel=1e-2)
    assert direct["tokens_per_s"] == pytest.approx(72 / direct["seconds"], rel=1e-2)
    # the direct engine starts from nothing in its own process, as the pipeline's actor does
    assert direct["seconds"] == pytest.approx(
        direct["start_seconds"] + direct["load_seconds"] + direct["generate_seconds"], abs=3e-3)
    assert direct["start_seconds"] > 0.2  # an interpreter and torch were started, not reused
    assert direct["generate_tokens_per_s"] > direct["tokens_per_s"]
    assert tiny_run["pipeline_overhead"] == pytest.approx(1 - pipeline["tokens_per_s"] / direct["tokens_per_s"], abs=1e-4)
    assert tiny_run["target"] == 0.10
    assert tiny_run["within_target"] is (tiny_run["pipeline_overhead"] <= 0.10)
    assert 0 < pipeline["first_block_seconds"] <= pipeline["seconds"]
    after_first = 72 - pipeline["first_block_tokens"]  # the tokens of the blocks after the first
    assert 0 < after_first < 72 and after_first % 6 == 0
    steady = after_first / (pipeline["seconds"] - pipeline["first_block_seconds"])
    assert pipeline["steady_tokens_per_s"] == pytest.approx(steady, rel=0.1)  # the timings are rounded to 1 ms
    assert tiny_run["steady_state_overhead"] == pytest.approx(
        1 - pipeline["steady_tokens_per_s"] / direct["generate_tokens_per_s"], abs=1e-3)
    assert tiny_run["steady_state_within_target"] is (tiny_run["steady_state_overhead"] <= 0.10)
    fixed = tiny_run["fixed_seconds"]
    assert fixed["direct"] == pytest.approx(direct["start_seconds"] + direct["load_seconds"], abs=2e-3)
    assert fixed["pipeline"] == pytest.approx(pipeline["seconds"] - 72 / pipeline["steady_tokens_per_s"], abs=2e-3)
    assert json.loads(json.dumps(tiny_run)) == tiny_run  # plain JSON all the way down


def test_projection_solves_the_two_sided_cost_model():
    # direct: 3 s fixed + 10k tok/s; pipeline: 8 s fixed + 10k tok/s -> D >= 0.9 P at N >= (7.2 - 3) / (0.1 / 1e4)
    pipeline = {"seconds": 9.0, "output_tokens": 10_000, "steady_tokens_per_s": 10_000.0}
    direct = {"start_seconds": 1.0, "load_seconds": 2.0, "generate_tokens_per_s": 10_000.0}
    assert pipeline_fixed_seconds(pipeline) == 8.0
    assert prompts_within_target(pipeline, direct, max_new_tokens=64) == math.ceil(420_000 / 64)
    P = 8.0 + 420_000 / 1e4
    D = 3.0 + 420_000 / 1e4
    assert 1 - D / P == pytest.approx(0.10)  # the projected size sits exactly on the target
    slow = {**pipeline, "steady_tokens_per_s": 8_000.0}  # steady pipeline under 90% of the engine: never
    assert prompts_within_target(slow, direct, max_new_tokens=64) is None
    cheap = {**pipeline, "seconds": 3.0}  # the pipeline starts no slower than the engine: any size
    assert prompts_within_target(cheap, direct, max_new_tokens=64) == 0
    assert prompts_within_target({**pipeline, "steady_tokens_per_s": None}, direct, 64) is None


def test_rows_are_matched_by_id_not_position():
    import pyarrow as pa

    direct = pa.table({"row": [0, 1, 2], "generated_text": ["a", "b", "c"]})
    assert same_text_rows(pa.table({"row": [2, 0, 1], "generated_text": ["c", "a", "b"]}), direct) == 3
    assert same_text_rows(pa.table({"row": [2, 0, 1], "generated_text": ["c", "x", "b"]}), direct) == 2


def test_prompts_are_generated_or_read(tmp_path):
    assert bench_prompts(5) == bench_prompts(5) and len(set(bench_prompts(5))) == 5
    assert read_prompts("3") == bench_prompts(3)
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    assert read_prompts(str(tmp_path / "p.txt")) == ["first prompt", "second prompt"]
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    assert read_prompts(str(tmp_path / "p.jsonl")) == ["a", "b"]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(MedrayError, match="bad.jsonl:2"):
        read_prompts(str(tmp_path / "bad.jsonl"))


def test_bad_options_fail_before_any_work(tmp_path):
    cases = [({"backend": "tgi"}, "backend"), ({"prompts": 0}, "prompts"), ({"batch_size": 0}, "batch_size"),
             ({"concurrency": 0}, "concurrency"), ({"max_new_tokens": 0}, "sampling.max_new_tokens"),
             ({"model": str(tmp_path / "none")}, "model")]
    for options, key in cases:
        with pytest.raises(ConfigError) as err:
            run_bench(**{"backend": "transformers", **options}, **QUIET)
        assert err.value.key == key, (options, str(err.value))
    if vllm_problem() is not None:
        with pytest.raises(ConfigError) as err:
            run_bench("vllm", str(tmp_path / "none"), **QUIET)
        assert err.value.key == "backend" and "vllm" in str(err.value)


@pytest.mark.gpu
def test_vllm_pipeline_beside_llm_generate(ray_local):
    problem = vllm_problem()
    if problem:
        pytest.skip(f"vLLM benchmark not run: {problem}")
    result = run_bench("vllm", None, prompts=64, max_new_tokens=32, batch_size=16, **QUIET)
    assert result["backend"] == "vllm" and result["device"] != "cpu"
    assert result["tokens_equal"] and result["output_tokens"] == 64 * 32
    print(json.dumps(result, indent=2))


def test_a_failing_direct_process_is_reported_with_its_error(tmp_path):
    import pyarrow as pa

    from medray.bench.synth_direct import run_direct_process
    from medray.synth.engine_settings import EngineConfig

    cfg = EngineConfig(model=str(tmp_path / "gone"))  # checks skipped: the child finds no model
    with pytest.raises(MedrayError, match=r"direct engine process failed \(exit 1\)") as err:
        run_direct_process(pa.table({"row": [0], "prompt": ["x"]}), cfg, tmp_path / "work")
    assert "gone" in str(err.value)  # the child's own error, not just an exit code


def test_direct_engines_get_one_replicas_means():
    from medray.bench.synth_direct import child_envs
    from medray.synth.engine_settings import EngineConfig

    cpu = child_envs(EngineConfig(concurrency=2, cpus_per_actor=3), base={"PATH": "/bin"})
    assert cpu == [{"PATH": "/bin", "OMP_NUM_THREADS": "3"}] * 2
    vllm = EngineConfig(backend="vllm", concurrency=2, tensor_parallel_size=2)
    envs = child_envs(vllm, base={}, gpus=["0", "1", "2", "3", "4"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3"]  # disjoint, a replica's worth each
    one_gpu = child_envs(EngineConfig(device="cuda", concurrency=3), base={}, gpus=["5", "6", "7"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in one_gpu] == ["5", "6", "7"]
    with pytest.raises(ConfigError, match="4 GPUs needed, 3 visible") as err:
        child_envs(vllm, base={}, gpus=["0", "1", "2"])
    assert err.value.key == "concurrency"
