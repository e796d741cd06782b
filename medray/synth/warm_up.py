"""Teach a model the synthesis output formats before it generates: a few steps of supervised training on
prompts paired with their reference outputs (`medray.synth.reference_output`), loss on the reply only.

Why: a small local model follows no instruction, so every item it writes fails to parse; taught on the
tasks of one split (e.g. train) it learns the formats and to carry the prompt's facts over, and then
generates for another split, where the validators judge what it wrote. A production run with an
instruction model needs none of this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from medray.errors import ConfigError


def chat_rows(tokenizer, prompts: Sequence[str], replies: Sequence[str], max_len: int) -> list[tuple[list[int], int]]:
    """(token ids of the whole chat, index where the reply starts) per pair; pairs longer than `max_len` left out."""
    rows = []
    for prompt, reply in zip(prompts, replies, strict=True):
        user = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        whole = user + reply + tokenizer.eos_token
        ids = tokenizer(whole)["input_ids"]
        start = len(tokenizer(user)["input_ids"])
        if len(ids) <= max_len and start < len(ids):
            rows.append((ids, start))
    return rows


def warm_up(model_dir: str, out_dir: str, prompts: Sequence[str], replies: Sequence[str], *, steps: int = 300,
            batch_size: int = 8, lr: float = 2e-3, seed: int = 0, threads: int | None = None,
            progress: Callable[[str], None] = lambda message: None) -> dict:
    """Train the model at `model_dir` on the pairs for `steps` steps and save it to `out_dir`; losses per quarter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medray.models.causal_lm import seeded
    from medray.models.hf_io import save_hf

    if steps < 1 or batch_size < 1:
        raise ConfigError("warm_up.steps", f"steps and batch_size must be at least 1, got {steps}, {batch_size}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if tokenizer.chat_template is None:
        raise ConfigError("engine.model", f"{model_dir}: the tokenizer has no chat template to teach the formats in")
    rows = chat_rows(tokenizer, prompts, replies, int(model.config.max_position_embeddings))
    if not rows:
        raise ConfigError("warm_up", "no prompt and reply pair fits the model's context")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads or saved_threads)
    losses: list[float] = []
    try:
        with seeded(seed):
            order = torch.randperm(len(rows)).tolist()
            optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            model.train()
            for step in range(steps):
                picked = [rows[order[(step * batch_size + k) % len(rows)]] for k in range(batch_size)]
                width = max(len(ids) for ids, _ in picked)
                ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in picked])
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in picked])
                labels = torch.tensor([[-100] * s + r[s:] + [-100] * (width - len(r)) for r, s in picked])
                lr_now = lr * min(1.0, (step + 1) / 10) * (0.1 + 0.9 * (1 - step / steps))
                for group in optim.param_groups:
                    group["lr"] = lr_now
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                optim.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                if (step + 1) % max(1, steps // 4) == 0:
                    progress(f"synth warm-up: step {step + 1}/{steps}, loss {sum(losses[-10:]) / len(losses[-10:]):.3f}")
        model.eval()
    finally:
        torch.set_num_threads(saved_threads)
    save_hf(model, tokenizer, out_dir)
    quarter = max(1, steps // 4)
    return {"model": out_dir, "pairs": len(rows), "left_out": len(prompts) - len(rows), "steps": steps,
            "loss_by_quarter": [round(sum(losses[i:i + quarter]) / len(losses[i:i + quarter]), 4)
                                for i in range(0, steps, quarter)]}


def teach(cfg, out_dir: str, *, split: str = "train", max_pairs: int = 200, steps: int = 300, seed: int = 0,
          progress: Callable[[str], None] = lambda message: None) -> dict:
    """Warm `cfg.engine.model` up on the caption and VQA tasks of `split` (retrieve, align and items as the job
    builds them, in this process) and save it to `out_dir`; point `engine.model` there for another split."""
    import dataclasses

    from medray.met.matcher import Matcher
    from medray.met.tree import Tree
    from medray.mm.align import filter_and_align
    from medray.mm.retrieve import anchor_pairs
    from medray.synth.items import build_items
    from medray.synth.reference_output import reference_output
    from medray.synth.run import read_job_pairs

    cfg = dataclasses.replace(cfg, split=split, max_pairs=max_pairs)
    cfg.check()
    tree = Tree.load(cfg.tree)
    matcher = Matcher(tree)
    pairs, _ = read_job_pairs(cfg)
    anchors = anchor_pairs(pairs, tree, cfg.retrieve, matcher=matcher).anchors
    aligned = filter_and_align(pairs, anchors, tree, cfg.align).kept
    tasks, _ = build_items(aligned, tree, cfg.items, matcher=matcher)
    replies = [reference_output(k, r) for k, r in zip(tasks.column("kind").to_pylist(), tasks.column("reference").to_pylist())]
    progress(f"synth warm-up: {tasks.num_rows} tasks from {aligned.num_rows} {split} pairs, {steps} steps ...")
    report = warm_up(cfg.engine.model, out_dir, tasks.column("prompt").to_pylist(), replies, steps=steps, seed=seed,
                     progress=progress)
    return {**report, "split": split, "pairs": aligned.num_rows, "tasks": tasks.num_rows}
