"""SFT rows over Arrow: tokenised with reasons for every reject, read from files, collated into padded tensors."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from medray import storage
from medray.data.tokenizer import load_tokenizer
from medray.errors import ConfigError, MedrayError
from medray.train.chat_format import IGNORE_INDEX, ChatEncoder, ChatFormatConfig
from medray.train.sft_collate import SFTCollator, ray_collate_fn
from medray.train.sft_data import (
    REJECT_SCHEMA,
    SFT_SCHEMA,
    SFTDataConfig,
    SFTTokenizeBatches,
    SFTTokenizeStage,
    read_sft_files,
    split_tagged,
    tokenize_sft_batch,
)

CORPUS = [
    "The chest radiograph shows a small left pleural effusion without pneumothorax.",
    "Patient presents with fever and productive cough; consolidation in the right lower lobe suggests pneumonia.",
    "Which side is the effusion on? Think about the meniscus sign and blunting of the angle.",
]
N_IMAGE_TOKENS = 2
PAD_ID, IMAGE_ID = 1, 4
COT = {"understanding": "Which side?", "visual_observation": "Blunting on the left.",
       "reasoning": "Blunting means fluid.", "conclusion": "Left effusion."}


@pytest.fixture(scope="module")
def config(tokenizer_dir) -> SFTDataConfig:
    return SFTDataConfig(tokenizer=tokenizer_dir, chat=ChatFormatConfig(image_tokens=N_IMAGE_TOKENS, max_len=120))


@pytest.fixture(scope="module")
def encoder(config) -> ChatEncoder:
    return ChatEncoder(load_tokenizer(config.tokenizer), config.chat)


def png(red: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 5), (red, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A tiny image preprocessor: 4x4, channels first, in [0, 1]."""
    return torch.from_numpy(np.asarray(image.resize((4, 4)), np.float32).transpose(2, 0, 1) / 255.0)


def chat(answer: str, images: list | None = None, user: str = "Findings?") -> dict:
    content = [{"type": "image"}] * len(images or []) + [{"type": "text", "text": user}]
    # Both contents as part lists: a table with the samples as columns needs one Arrow type per column.
    return {"messages": [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "images": images or []}


ROWS = {
    "good-text": json.dumps(chat("No pneumothorax.")),
    "good-image": json.dumps(chat("Left effusion.", ["cxr/1.png"])),
    "good-cot": json.dumps({"question": "Which side?", "images": ["cxr/2.png"], "cot": COT, "answer": "Left"}),
    "bad-json": '{"messages": [',
    "not-object": "[1, 2]",
    "unknown-role": json.dumps({"messages": [{"role": "nurse", "content": "x"}, {"role": "assistant", "content": "y"}]}),
    "no-assistant": json.dumps({"messages": [{"role": "user", "content": "x"}]}),
    "image-mismatch": json.dumps(chat("Two views.", ["a.png"]) | {"images": ["a.png", "b.png"]}),
    "bad-cot": json.dumps({"question": "Which side?", "images": ["c.png"], "answer": "Left",
                           "cot": {k: v for k, v in COT.items() if k != "reasoning"}}),
    "too-long": json.dumps(chat(" ".join(CORPUS * 3))),
    "bad-image-ref": json.dumps({"messages": chat("x", ["a.png"])["messages"], "images": [7]}),
}
EXPECTED_REASONS = {"bad-json": "bad_json", "not-object": "bad_json", "unknown-role": "unknown_role",
                    "no-assistant": "no_assistant_turn", "image-mismatch": "image_count_mismatch",
                    "bad-cot": "cot_missing_section", "too-long": "too_long", "bad-image-ref": "bad_image_ref"}


def rows_table() -> pa.Table:
    return pa.table({"id": list(ROWS), "sample": list(ROWS.values())})


def test_every_row_is_kept_or_rejected_with_its_reason(encoder, config):
    result = tokenize_sft_batch(rows_table(), encoder, config)
    kept, rejects = result.kept, result.dropped
    assert kept.schema == SFT_SCHEMA and rejects.schema == REJECT_SCHEMA
    assert kept.num_rows + rejects.num_rows == len(ROWS)
    assert kept.column("id").to_pylist() == ["good-text", "good-image", "good-cot"]
    assert dict(zip(rejects.column("id").to_pylist(), rejects.column("reason").to_pylist())) == EXPECTED_REASONS
    assert rejects.column("raw").to_pylist() == [ROWS[i] for i in EXPECTED_REASONS]
    bad_cot = rejects.filter(pa.compute.equal(rejects.column("id"), "bad-cot")).column("detail")[0].as_py()
    assert bad_cot.startswith("Reasoning")
    rows = kept.to_pylist()
    for row in rows:
        assert row["num_tokens"] == len(row["input_ids"]) == len(row["labels"])
        assert row["num_loss_tokens"] == sum(label != IGNORE_INDEX for label in row["labels"]) > 0
        assert row["input_ids"].count(IMAGE_ID) == N_IMAGE_TOKENS * row["n_images"]
    assert [r["n_images"] for r in rows] == [0, 1, 1]
    assert [r["image_refs"] for r in rows] == [[], [{"path": "cxr/1.png", "bytes": None}], [{"path": "cxr/2.png", "bytes": None}]]
    assert [r["reasoning"] for r in rows] == [False, False, True]
    assert result.counts["samples"] == 3 and result.counts["tokens"] == sum(r["num_tokens"] for r in rows)
    # The CoT row's loss covers the rendered sections and the answer.
    cot_row = rows[2]
    trained = [t for t, label in zip(cot_row["input_ids"], cot_row["labels"]) if label != IGNORE_INDEX]
    text = load_tokenizer(config.tokenizer).decode(trained, skip_special_tokens=False)
    assert text.startswith("## Understanding\nWhich side?") and text.endswith("Answer: Left\n<|im_end|>")


def test_rows_as_their_own_columns_and_image_root(encoder, tokenizer_dir):
    config = SFTDataConfig(tokenizer=tokenizer_dir, chat=ChatFormatConfig(image_tokens=N_IMAGE_TOKENS), image_root="s3://b/img")
    table = pa.Table.from_pylist([chat("Clear.", ["1.png"]), chat("Effusion.", ["/abs/2.png"]),
                                  chat("Stable.", ["s3://other/3.png"])])
    kept = tokenize_sft_batch(table, encoder, config).kept
    paths = [r[0]["path"] for r in kept.column("image_refs").to_pylist()]
    assert paths == ["s3://b/img/1.png", "/abs/2.png", "s3://other/3.png"]
    assert kept.column("id").to_pylist() == [None, None, None]


def test_truncation_keeps_the_images_of_the_kept_turns(encoder, tokenizer_dir):
    sample = {"messages": chat("Left effusion.", ["a.png"])["messages"]
              + [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And now?"}]},
                 {"role": "assistant", "content": " ".join(CORPUS)}], "images": ["a.png", "b.png"]}
    config = SFTDataConfig(tokenizer=tokenizer_dir, chat=ChatFormatConfig(image_tokens=N_IMAGE_TOKENS, max_len=40,
                                                                          overflow="truncate"))
    kept = SFTTokenizeStage(config).process(pa.table({"sample": [json.dumps(sample)]})).kept.to_pylist()[0]
    assert kept["truncated_turns"] == 2 and kept["n_images"] == 1 and kept["num_tokens"] <= 40
    assert kept["image_refs"] == [{"path": "a.png", "bytes": None}]


def test_check_images_rejects_unreadable_images(tmp_path, tokenizer_dir):
    (tmp_path / "ok.png").write_bytes(png(50))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    config = SFTDataConfig(tokenizer=tokenizer_dir, chat=ChatFormatConfig(image_tokens=N_IMAGE_TOKENS),
                           image_root=str(tmp_path), check_images=True)
    table = pa.table({"id": ["ok", "broken", "missing"],
                      "sample": [json.dumps(chat("x", [name])) for name in ("ok.png", "broken.png", "missing.png")]})
    result = SFTTokenizeStage(config).process(table)
    assert result.kept.column("id").to_pylist() == ["ok"]
    assert result.dropped.column("reason").to_pylist() == ["bad_image", "bad_image"]
    assert "broken.png" in result.dropped.column("detail")[0].as_py()


def test_tagged_output_for_map_batches_splits_back_into_kept_and_rejects(config):
    table = rows_table()
    direct = SFTTokenizeStage(config).process(table)
    kept, rejects = split_tagged(SFTTokenizeBatches(config)(table))
    assert kept.equals(direct.kept) and rejects.equals(direct.dropped)


def test_read_sft_files_gives_ids_by_file_and_line(tmp_path, encoder, config):
    folder = tmp_path / "sft"
    folder.mkdir()
    lines = [json.dumps(chat("One.")).encode(), b"", b"\xff\xfe not utf-8", b'{"messages": 3}', json.dumps(chat("Two.")).encode()]
    (folder / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    pq.write_table(pa.Table.from_pylist([chat("Three.", [png(9)])]), folder / "b.parquet")
    tables = list(read_sft_files(str(folder), chunk_rows=2))
    assert [t.num_rows for t in tables] == [2, 2, 1]
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    assert ids == ["a.jsonl:1", "a.jsonl:3", "a.jsonl:4", "a.jsonl:5", "b.parquet:1"]
    results = [tokenize_sft_batch(t, encoder, config) for t in tables]
    kept = [i for r in results for i in r.kept.column("id").to_pylist()]
    rejected = {i: r for res in results for i, r in zip(res.dropped.column("id").to_pylist(),
                                                        res.dropped.column("reason").to_pylist())}
    assert kept == ["a.jsonl:1", "a.jsonl:5", "b.parquet:1"]
    assert rejected == {"a.jsonl:3": "bad_json", "a.jsonl:4": "bad_messages"}
    refs = results[-1].kept.column("image_refs").to_pylist()[0]
    assert refs == [{"path": None, "bytes": png(9)}]


def test_config_errors_name_the_key(tokenizer_dir):
    with pytest.raises(ConfigError) as err:
        SFTDataConfig(tokenizer=tokenizer_dir, chat=ChatFormatConfig(train_on="first")).validate("sft.data")
    assert err.value.key == "sft.data.chat.train_on"
    with pytest.raises(ConfigError) as err:
        SFTDataConfig(pad_to_multiple_of=0).validate()
    assert err.value.key == "data.pad_to_multiple_of"


# ---- collate -----------------------------------------------------------------------------------------


def test_collate_pads_right_to_a_multiple_of_8_with_mask_and_ignored_labels():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
            {"input_ids": list(range(10, 20)), "labels": [-100] * 5 + list(range(15, 20))}]
    batch = SFTCollator(PAD_ID)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 16) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][0].tolist() == [5, 6, 7] + [PAD_ID] * 13
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 10]
    assert batch["attention_mask"][1].tolist() == [1] * 10 + [0] * 6
    assert batch["labels"][0].tolist() == [-100, 6, 7] + [-100] * 13
    assert batch["labels"][1, 10:].eq(-100).all()
    assert SFTCollator(PAD_ID, pad_to_multiple_of=1)(rows)["input_ids"].shape == (2, 10)


def test_collate_stacks_pixel_values_in_sample_then_image_order(tmp_path, s3_prefix):
    (tmp_path / "red30.png").write_bytes(png(30))
    storage.atomic_write_bytes(f"{s3_prefix}/red90.png", png(90))
    refs = [[{"path": str(tmp_path / "red30.png"), "bytes": None}, {"path": None, "bytes": png(60)}],
            [],
            [{"path": f"{s3_prefix}/red90.png", "bytes": None}]]
    table = pa.table({"input_ids": [[1, 2], [3], [4, 5, 6]], "labels": [[1, 2], [3], [4, 5, 6]],
                      "image_refs": pa.array(refs, SFT_SCHEMA.field("image_refs").type)})
    batch = SFTCollator(PAD_ID, image_processor=to_tensor)(table)
    pixels = batch["pixel_values"]
    assert pixels.shape == (3, 3, 4, 4) and pixels.dtype == torch.float32
    assert [round(float(v) * 255) for v in pixels[:, 0].mean(dim=(1, 2))] == [30, 60, 90]
    assert pixels[:, 1:].abs().sum() == 0
    with pytest.raises(MedrayError, match="no image_processor"):
        SFTCollator(PAD_ID)(table)
    with pytest.raises(MedrayError, match=r"\[C, H, W\]"):
        SFTCollator(PAD_ID, image_processor=lambda image: torch.zeros(4, 4))(table)
    with pytest.raises(MedrayError, match="not a readable image"):
        SFTCollator(PAD_ID, image_processor=to_tensor)({"input_ids": [[1]], "labels": [[1]],
                                                        "image_refs": [[{"path": str(tmp_path / "none.png")}]]})


def test_on_ray_data_tokenise_with_an_actor_pool_and_collate_in_iter_torch_batches(ray_local, tmp_path, config):
    import ray

    images = {"cxr/1.png": png(40), "cxr/2.png": png(80)}
    for name, data in images.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    run_config = SFTDataConfig(tokenizer=config.tokenizer, chat=config.chat, image_root=str(tmp_path))
    tagged = ray.data.from_arrow(rows_table()).map_batches(
        SFTTokenizeBatches, fn_constructor_args=(run_config,), batch_format="pyarrow", batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=1)).materialize()
    kept, rejects = split_tagged(pa.concat_tables(ray.get(tagged.to_arrow_refs())))
    assert kept.num_rows + rejects.num_rows == len(ROWS)
    assert sorted(kept.column("id").to_pylist()) == ["good-cot", "good-image", "good-text"]
    assert dict(zip(rejects.column("id").to_pylist(), rejects.column("reason").to_pylist())) == EXPECTED_REASONS
    collate = SFTCollator(PAD_ID, image_processor=to_tensor)
    ordered = kept.sort_by("id")  # good-cot, good-image, good-text
    batches = list(ray.data.from_arrow(ordered).iter_torch_batches(batch_size=3, collate_fn=ray_collate_fn(collate)))
    assert len(batches) == 1
    batch = batches[0]
    lengths = ordered.column("num_tokens").to_pylist()
    assert batch["input_ids"].shape == (3, -(-max(lengths) // 8) * 8)
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert [round(float(v) * 255) for v in batch["pixel_values"][:, 0].mean(dim=(1, 2))] == [80, 40]
    assert batch["labels"][batch["input_ids"] == IMAGE_ID].eq(IGNORE_INDEX).all()
