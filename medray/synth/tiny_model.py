"""A tiny causal LM folder (weights, config, tokenizer with a chat template) written in seconds, offline.

Tests and `make demo` need a real model folder that `AutoModelForCausalLM`,
`AutoTokenizer` and vLLM all load without a hub. This builds one from
config: a byte-level BPE tokenizer trained on a few hundred report-style
lines made from the radiology lexicon, a seeded Llama-shaped model sized to
it, a ChatML template (the format SFT trains on), and a generation config
that stops at `<|endoftext|>` or `<|im_end|>`. The same seed gives the
same weights and tokenizer. The default head size (32) is one the GPU
attention kernels accept, so the folder also serves the vLLM tests.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator

from medray.data.tokenizer import EOS_TOKEN, IM_END_TOKEN

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_QUESTION = "Write one finding from a chest imaging report."
_SIDES = ("left", "right", "bilateral", "")
_PLACES = ("lung base", "upper lobe", "lower lobe", "costophrenic angle", "hilum", "apex", "mediastinum")
_MODALITIES = ("PA and lateral chest radiograph", "portable AP chest radiograph", "CT of the chest", "chest X-ray")
_TEMPLATES = (
    "FINDINGS: {finding} in the {side} {place}.",
    "There is {finding} at the {side} {place} on the {modality}.",
    "IMPRESSION: {finding}. {absent}.",
    "{modality} shows {finding}; {absent}.",
    "Question: which finding is seen on the {modality}? Answer: {finding}.",
    "Compared with the prior {modality}, {finding} is unchanged in the {place}.",
)


def report_lines(n: int = 400, seed: int = 0) -> Iterator[str]:
    """`n` short report-style sentences over the lexicon's findings, the same for the same seed."""
    from medray.met.sources.radiology_lexicon import OBSERVATIONS

    rng = random.Random(seed)
    findings = [s for o in OBSERVATIONS for s in o.surfaces]
    absents = [a for o in OBSERVATIONS for a in o.absent_forms] or ["no acute abnormality"]
    for _ in range(n):
        line = rng.choice(_TEMPLATES).format(
            finding=rng.choice(findings), side=rng.choice(_SIDES), place=rng.choice(_PLACES),
            modality=rng.choice(_MODALITIES), absent=rng.choice(absents))
        line = " ".join(line.split())
        yield line[0].upper() + line[1:]


def write_tiny_causal_lm(out_dir: str, seed: int = 0, *, vocab_size: int = 512, architecture: str = "llama",
                         hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2, num_kv_heads: int = 1,
                         intermediate_size: int = 128, max_position_embeddings: int = 1024,
                         lines: int = 400, train_steps: int = 60) -> str:
    """Write the model folder at `out_dir` (local or s3://) and return it.

    `train_steps` of next-token training on the report lines (half plain,
    ended by `<|endoftext|>`, half as the answer to `CHAT_QUESTION` in the
    chat template) make the output look like a report and end on its own,
    so both finish reasons occur; 0 keeps the random weights.
    """
    from medray.data.tokenizer import load_tokenizer, train_tokenizer
    from medray.models.causal_lm import ModelConfig, load_causal_lm
    from medray.models.hf_io import save_hf

    with tempfile.TemporaryDirectory(prefix="medray-tiny-tok-") as tok_dir:
        train_tokenizer(report_lines(lines, seed), vocab_size, tok_dir, min_frequency=2, seed=seed)
        cfg = ModelConfig(tokenizer=tok_dir, architecture=architecture, hidden_size=hidden_size, num_layers=num_layers,
                          num_heads=num_heads, num_kv_heads=num_kv_heads, intermediate_size=intermediate_size,
                          max_position_embeddings=max_position_embeddings, seed=seed)
        model, _ = load_causal_lm(cfg)
        tokenizer = load_tokenizer(tok_dir)
    tokenizer.chat_template = CHATML_TEMPLATE
    if train_steps:
        _fit(model, tokenizer, list(report_lines(lines, seed + 1)), train_steps, seed)
    stops = [tokenizer.convert_tokens_to_ids(t) for t in (EOS_TOKEN, IM_END_TOKEN)]
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_hf(model, tokenizer, str(out_dir))


def _fit(model, tokenizer, lines: list[str], steps: int, seed: int, batch: int = 32, lr: float = 3e-3) -> None:
    """A few AdamW steps over `lines`, deterministic for the seed, on one thread (fast for a tiny model)."""
    import torch

    from medray.models.causal_lm import seeded

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": CHAT_QUESTION}, {"role": "assistant", "content": line}],
                                           tokenize=False).rstrip("\n") for line in lines[1::2]]
    rows = [ids + [eos] for ids in tokenizer(lines[::2])["input_ids"]] + tokenizer(chats)["input_ids"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with seeded(seed):
            order = torch.randperm(len(rows)).tolist()
            optim = torch.optim.AdamW(model.parameters(), lr=lr)
            model.train()
            for step in range(steps):
                picked = [rows[order[(step * batch + k) % len(rows)]] for k in range(batch)]
                width = max(len(r) for r in picked)
                ids = torch.tensor([r + [pad] * (width - len(r)) for r in picked])
                mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in picked])
                loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
                loss.backward()
                optim.step()
                optim.zero_grad(set_to_none=True)
            model.eval()
    finally:
        torch.set_num_threads(threads)
