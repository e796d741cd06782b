"""`medray bench data`: the whole text pipeline at two input sizes, per-stage throughput and peak memory.

Each size runs as a fresh `medray data run` process with its own local Ray
cluster; a sampler sums the RSS of that process and all its descendants
(the Ray workers) every half second, so "peak memory" is the whole job's.
Whole-pipeline throughput is input tokens (whitespace words) over the CPU
seconds of the whole process tree, Ray's own overhead included, and the
marginal rate between the two sizes (Ray's fixed start-up cancels out) is
what the 640B-token arithmetic uses; per-stage
figures are tokens over the stage's CPU seconds inside the workers. The
near-dup baseline (`datasketch`) runs in this process on a slice of the
same documents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

TARGET_TAG_SAMPLE = 2_000_000
TARGET_PIPELINE = 200_000
CORPUS_TOKENS = 640e9
CORES = 1000


class TreeSampler:
    """Peak memory and cumulative CPU of a process and its descendants, sampled in a thread.

    Memory is the summed PSS (proportional set size): a page shared by several processes, such as
    Ray's object store mapped into every worker or a shared library, counts once in total. Summed
    RSS counts it once per process, so it grows with the number of workers rather than with what
    the job holds; it is reported beside for reference.
    """

    def __init__(self, pid: int, every_s: float = 0.5):
        import psutil

        self.root, self.every = psutil.Process(pid), every_s
        self.peak_rss = self.peak_pss = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    mem = p.memory_full_info()
                    rss, pss = rss + mem.rss, pss + mem.pss
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
                except psutil.Error:
                    continue
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_pss_mb": round(self.peak_pss / 2**20, 1), "peak_rss_sum_mb": round(self.peak_rss / 2**20, 1),
                "cpu_s": round(sum(self.cpu.values()), 2)}


def _run_job(corpus: str, out: str, overrides: list[str]) -> tuple[dict, dict]:
    cmd = [sys.executable, "-m", "medray", "data", "run", "data/pipeline", f"input=[{corpus}]", f"out={out}",
           "resume=false", "tracking.enabled=false", *overrides]
    start = time.perf_counter()
    with open(f"{out}.log", "w") as log:
        # the report is read from OUT/report.json: Ray forwards worker output to the driver's stdout
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RAY_ADDRESS": ""})
        sampler = TreeSampler(proc.pid)
        proc.wait()
    usage = sampler.stop()
    usage["wall_s"] = round(time.perf_counter() - start, 1)
    if proc.returncode:
        raise RuntimeError(f"pipeline failed ({proc.returncode}); see {log.name}")
    with open(os.path.join(out, "report.json")) as fh:
        return json.load(fh), usage


def _summary(report: dict, usage: dict) -> dict:
    stages = report["stages"]
    tokens = stages["read"]["tokens_in"]
    per_stage = {name: {"tokens_in": t["tokens_in"], "cpu_s": t["cpu_s"], "tokens_per_s_per_core": t["tokens_per_s_per_core"]}
                 for name, t in stages.items()}
    tag_sample_cpu = sum(stages[s]["cpu_s"] for s in ("tag", "sample") if s in stages)
    tag_sample = round(stages["tag"]["tokens_in"] / tag_sample_cpu) if tag_sample_cpu else None
    whole = round(tokens / usage["cpu_s"]) if usage["cpu_s"] else None
    return {"input_tokens": tokens, "records": stages["read"]["in"], **usage,
            "pipeline_tokens_per_s_per_core": whole, "tag_plus_sample_tokens_per_s_per_core": tag_sample,
            "stages_cpu_s": round(sum(t["cpu_s"] for t in stages.values()), 2), "stages": per_stage,
            "outputs": report["outputs"]}


def run_bench(tree_path: str, sizes_mb: list[float], work: str, seed: int = 0, neardup_mb: float = 10.0, progress=print) -> dict:
    from medray.data.quality_bootstrap import quality_train
    from medray.data.synthetic import generate_corpus
    from medray.data.tokenizer import tokenizer_train
    from medray.met.tree import Tree

    tree = Tree.load(tree_path)
    runs = {}
    prepared = False
    overrides: list[str] = []
    for size in sizes_mb:
        corpus = os.path.join(work, f"corpus-{size:g}mb")
        progress(f"generating {size:g} MB ...")
        truth = generate_corpus(tree, corpus, size_mb=size, files=max(4, int(size // 25)), seed=seed)
        if not prepared:
            progress("quality model and tokenizer ...")
            quality = quality_train({"model_path": os.path.join(work, "quality.bin"), "rounds": 0})
            tokenizer_train(corpus, os.path.join(work, "tokenizer"), vocab_size=8000, max_docs=20000)
            th = truth["thresholds"]
            overrides = [f"tag.tree={tree_path}", f"quality.model_path={quality['model_path']}",
                         f"pack.tokenizer={os.path.join(work, 'tokenizer')}", "chunk_lines=5000",
                         f"rules.min_words={th['min_words']}", f"rules.max_words={th['max_words']}",
                         f"rules.max_digit_ratio={th['max_digit_ratio']}"]
            prepared = True
        progress(f"pipeline on {size:g} MB ...")
        report, usage = _run_job(corpus, os.path.join(work, f"out-{size:g}mb"), overrides)
        runs[f"{size:g}MB"] = _summary(report, usage)
    progress("near-dup beside datasketch ...")
    neardup = _neardup_baseline(os.path.join(work, f"corpus-{sizes_mb[0]:g}mb"), neardup_mb)
    first, last = list(runs.values())[0], list(runs.values())[-1]
    whole = min(r["pipeline_tokens_per_s_per_core"] or 0 for r in runs.values())
    extra_cpu = last["cpu_s"] - first["cpu_s"]
    # Ray's start-up costs the same at any size; what the next token costs is what scales to 640B
    marginal = round((last["input_tokens"] - first["input_tokens"]) / extra_cpu) if len(runs) > 1 and extra_cpu > 0 else None
    rate = marginal or whole
    peaks = [r["peak_pss_mb"] for r in runs.values()]
    tag_sample = min(r["tag_plus_sample_tokens_per_s_per_core"] or 0 for r in runs.values())
    return {
        "benchmark": "data",
        "cpu": os.cpu_count(),
        "runs": runs,
        "memory": {"measure": "summed PSS of the job's process tree", "peak_pss_mb": peaks,
                   "peak_rss_sum_mb": [r["peak_rss_sum_mb"] for r in runs.values()], "ratio_largest_to_smallest": round(peaks[-1] / peaks[0], 2) if peaks[0] else None,
                   "input_ratio": round(sizes_mb[-1] / sizes_mb[0], 2)},
        "neardup_vs_datasketch": neardup,
        "scale": {"tokens": CORPUS_TOKENS, "cores": CORES, "pipeline_tokens_per_s_per_core": rate,
                  "rate_is": "marginal: extra input tokens / extra whole-job CPU between the sizes" if marginal else "whole job, smallest size",
                  "whole_job_tokens_per_s_per_core_worst": whole,
                  "hours": round(CORPUS_TOKENS / (rate * CORES) / 3600, 2) if rate else None,
                  "arithmetic": f"{CORPUS_TOKENS:.0f} tokens / ({rate} tokens/s/core x {CORES} cores) / 3600 s/h" if rate else None},
        "targets": {"tag_plus_sample_tokens_per_s_per_core": TARGET_TAG_SAMPLE, "tag_plus_sample_met": tag_sample >= TARGET_TAG_SAMPLE,
                    "pipeline_tokens_per_s_per_core": TARGET_PIPELINE, "pipeline_met": bool(rate and rate >= TARGET_PIPELINE),
                    "memory_flat": bool(peaks[0] and peaks[-1] / peaks[0] < 1.25),
                    "under_an_hour_on_1000_cores": bool(rate and CORPUS_TOKENS / (rate * CORES) < 3600)},
    }


def _neardup_baseline(corpus: str, size_mb: float) -> dict:
    from medray.bench.neardup import compare_with_datasketch
    from medray.data.io import iter_texts

    texts, size = [], 0
    for text in iter_texts(corpus):
        texts.append(text)
        size += len(text)
        if size >= size_mb * 1e6:
            break
    return compare_with_datasketch(texts)
