"""What an LLM engine runs: the model, the backend, batching and sampling, checked before anything loads.

One config drives both backends so that a synthesis job moves from a laptop
(`transformers` on CPU actors) to a GPU cluster (vLLM through `ray.data.llm`)
by changing `backend` alone: the prompts, the per-row seeds and the output
columns stay the same. `check()` fails on the driver, naming the key, before
a model is read or an actor starts; a vLLM run on a machine that cannot host
it is refused here rather than after minutes of scheduling.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa

from medray import storage
from medray.errors import ConfigError, MedrayError

BACKENDS = ("transformers", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
FINISH_REASONS = ("stop", "length")

# Columns every backend adds; input columns pass through beside them.
OUTPUT_FIELDS = (
    pa.field("generated_text", pa.string()),
    pa.field("num_input_tokens", pa.int32()),
    pa.field("num_generated_tokens", pa.int32()),
    pa.field("finish_reason", pa.string()),
)
OUTPUT_COLUMNS = tuple(f.name for f in OUTPUT_FIELDS)


@dataclass
class SamplingConfig:
    """Sampling shared by every row; a row's own `seed` / `max_new_tokens` columns override these."""

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy (the seed then changes nothing)
    top_p: float = 1.0
    seed: int = 0
    ignore_eos: bool = False  # generate exactly max_new_tokens (benchmarks: both sides do the same work)

    def check(self, prefix: str = "sampling") -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"{prefix}.max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"{prefix}.temperature", f"must be at least 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"{prefix}.top_p", f"must be in (0, 1], got {self.top_p}")
        if self.seed < 0:
            raise ConfigError(f"{prefix}.seed", f"must be at least 0, got {self.seed}")


@dataclass
class EngineConfig:
    """An LLM engine: `backend` transformers (CPU or one GPU per actor) or vllm (GPU replicas)."""

    backend: str = "transformers"  # transformers | vllm
    model: str = ""  # Hugging Face folder, local or s3:// (s3 is fetched into the cache first)
    tokenizer: Optional[str] = None  # noqa: UP045  (default: the model folder's)
    batch_size: int = 16  # rows per generate call (transformers) or per engine request batch (vllm)
    concurrency: int = 1  # transformers: actors, one model each; vllm: engine replicas
    tensor_parallel_size: int = 1  # vllm only: GPUs per replica
    max_model_len: Optional[int] = None  # noqa: UP045  (prompt + generated tokens; default: the model's)
    dtype: str = "auto"  # auto (float32 on CPU, bfloat16 on GPU) | float32 | bfloat16 | float16
    device: str = "auto"  # transformers only: auto | cpu | cuda (cuda reserves one GPU per actor)
    cpus_per_actor: float = 1.0  # transformers only
    apply_chat_template: bool = False  # wrap each prompt as one user turn with the tokenizer's template
    gpu_memory_utilization: float = 0.9  # vllm only
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.model

    def check(self, prefix: str = "engine", *, need_runtime: bool = True, files: bool = True) -> EngineConfig:
        """Fail before anything loads, naming the key.

        `files=False` skips the model and tokenizer folders (a caller about to
        write them), `need_runtime=False` the vLLM/GPU probe.
        """
        key = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
        if self.backend not in BACKENDS:
            raise ConfigError(key("backend"), f"{self.backend!r}: expected one of {', '.join(BACKENDS)}")
        for name, allowed in (("dtype", DTYPES), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(key(name), f"{getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name in ("batch_size", "concurrency", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ConfigError(key(name), f"must be at least 1, got {getattr(self, name)}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ConfigError(key("max_model_len"), f"must be at least 2, got {self.max_model_len}")
        if self.cpus_per_actor <= 0:
            raise ConfigError(key("cpus_per_actor"), f"must be positive, got {self.cpus_per_actor}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(key("gpu_memory_utilization"), f"must be in (0, 1], got {self.gpu_memory_utilization}")
        self.sampling.check(key("sampling"))
        if self.backend == "transformers" and self.tensor_parallel_size != 1:
            raise ConfigError(key("tensor_parallel_size"),
                              "the transformers backend holds one whole model per actor: tensor parallelism needs backend vllm")
        if files:
            self._check_files(key)
        if need_runtime and self.backend == "vllm":
            problem = vllm_problem(self.tensor_parallel_size)
            if problem:
                raise ConfigError(key("backend"), f"vllm cannot run here: {problem}; use backend transformers")
        return self

    def _check_files(self, key) -> None:
        from medray.models.hf_io import has_model

        if not self.model:
            raise ConfigError(key("model"), "no model: give a Hugging Face folder (local or s3://)")
        if not has_model(self.model):
            raise ConfigError(key("model"), f"no model at {self.model} (expected a Hugging Face folder with config.json)")
        tok = self.tokenizer_path
        if not any(storage.exists(storage.join(tok, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
            raise ConfigError(key("tokenizer"), f"no tokenizer at {tok}")
        if self.apply_chat_template and not has_chat_template(tok):
            raise ConfigError(key("apply_chat_template"), f"the tokenizer at {tok} has no chat template")


def has_chat_template(tokenizer_dir: str) -> bool:
    """True when the tokenizer folder carries a chat template (a .jinja file or the tokenizer_config key)."""
    if storage.exists(storage.join(tokenizer_dir, "chat_template.jinja")):
        return True
    path = storage.join(tokenizer_dir, "tokenizer_config.json")
    try:
        return bool(json.loads(storage.read_text(path)).get("chat_template"))
    except (MedrayError, OSError, ValueError, AttributeError):  # missing or unreadable: no template
        return False


def vllm_problem(tensor_parallel_size: int = 1) -> str | None:
    """Why vLLM cannot run from here, or None: the package must import and the GPUs must exist.

    GPUs count when this process sees them or, where Ray is already up, when
    the cluster has them (a CPU driver may submit to GPU workers).
    """
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (pip install 'medray[gpu]')"
    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        pass
    try:
        import ray

        if ray.is_initialized():
            gpus = max(gpus, int(ray.cluster_resources().get("GPU", 0)))
    except ImportError:
        pass
    if gpus < tensor_parallel_size:
        return f"{tensor_parallel_size} CUDA GPU(s) needed, {gpus} found"
    return None
