"""Kept synthesis items -> SFT rows that `medray train sft` reads, written as JSONL.

Captions and VQA become chat rows (`messages` with an image part, `images`);
reasoning items become structured-CoT rows (`question`, `cot`, `answer`,
`images`), which `medray.train.sft_data` renders with the same markup the
model was asked to write. Each row also carries its item `id` and `kind`,
which the SFT reader ignores but which let a training sample be traced back
to its pair and prompt.
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa

from medray import storage
from medray.errors import MedrayError
from medray.synth.prompts import format_options

CAPTION_INSTRUCTIONS = (
    "Describe this image.",
    "Write a caption for this medical image.",
    "What does this image show? Describe the modality, anatomy and findings.",
)
REQUIRED_COLUMNS = ("id", "kind", "image_path", "question", "options", "answer", "cot")


def _user(image: bool, text: str) -> list[dict]:
    return ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]


def _chat(item: dict, question: str, answer: str) -> dict:
    images = [item["image_path"]] if item.get("image_path") else []
    return {"id": item["id"], "kind": item["kind"], "images": images,
            "messages": [{"role": "user", "content": _user(bool(images), question)},
                         {"role": "assistant", "content": answer}]}


def _with_options(question: str, options: list[str]) -> str:
    return f"{question}\nOptions: {format_options(options)}"


def sft_row(item: dict) -> dict:
    """One kept item (a row of `validate_items`' kept table) as one SFT sample."""
    kind = item["kind"]
    if kind == "caption":
        instruction = CAPTION_INSTRUCTIONS[sum(map(ord, item["id"])) % len(CAPTION_INSTRUCTIONS)]
        return _chat(item, instruction, item["answer"])
    if kind == "vqa_yesno":
        return _chat(item, item["question"], item["answer"].capitalize() + ".")
    if kind == "vqa_mcq":
        return _chat(item, _with_options(item["question"], item["options"]), item["answer"])
    if kind == "vqa_open":
        return _chat(item, item["question"], item["answer"])
    if kind == "reasoning_vqa":
        if not item.get("cot"):
            raise MedrayError(f"item {item['id']}: a reasoning item without its chain of thought")
        images = [item["image_path"]] if item.get("image_path") else []
        return {"id": item["id"], "kind": kind, "question": _with_options(item["question"], item["options"]),
                "cot": json.loads(item["cot"]), "answer": item["answer"], "images": images}
    raise MedrayError(f"item {item['id']}: unknown kind {kind!r}")


def sft_rows(kept: pa.Table) -> list[dict]:
    missing = [c for c in REQUIRED_COLUMNS if c not in kept.column_names]
    if missing:
        raise MedrayError(f"kept items lack columns: {', '.join(missing)} (expected the output of validate_items)")
    return [sft_row(item) for item in kept.select(list(REQUIRED_COLUMNS)).to_pylist()]


def write_sft(kept: pa.Table, out: str) -> dict:
    """Write the SFT rows of `kept` to `out` (a .jsonl path, local or s3://); returns counts per kind."""
    rows = sft_rows(kept)
    storage.write_text(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return {"path": str(out), "rows": len(rows), "per_kind": dict(sorted(Counter(r["kind"] for r in rows).items()))}
