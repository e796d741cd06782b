"""Tokenise and pack: fixed-length rows, EOS between documents, positions restarting at each document."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medray.bench.corpus import generate_documents
from medray.data.pack import (
    PackConfig,
    Packer,
    TokenizeStage,
    pack_shard,
    pack_table,
    write_packed_shard,
)
from medray.data.tokenizer import EOS_TOKEN, train_tokenizer
from medray.errors import ConfigError
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id

SEQ = 64


def clinical_documents(target_bytes: int, seed: int) -> list[str]:
    terms = {
        "disease": ["pleural effusion", "pneumonia", "pulmonary embolism", "heart failure"],
        "anatomy": ["left lung", "right hemithorax", "mediastinum", "cardiac silhouette"],
        "modality": ["Chest radiograph", "CT scan", "Ultrasound"],
        "symptom": ["dyspnea", "cough", "fever", "atelectasis", "consolidation"],
    }
    nodes = [Node(ROOT_ID, None, None, 0, "Medical Entity Tree")]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a.title()) for a in AXES]
    for axis, names in terms.items():
        nodes += [Node(f"T:{axis[:3]}{i}", axis_node_id(axis), axis, 2, name) for i, name in enumerate(names)]
    return list(generate_documents(Tree.from_nodes(nodes), target_bytes, seed=seed))


def records(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [f"notes.jsonl:{i + 1}" for i in range(n)], "text": texts,
                     "source": ["notes.jsonl"] * n, "meta": ["{}"] * n})


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("pack-tok") / "tokenizer"
    return train_tokenizer(iter(clinical_documents(250_000, seed=11)), 500, str(out))


@pytest.fixture(scope="module")
def stage(tokenizer_dir) -> TokenizeStage:
    stage = TokenizeStage(PackConfig(tokenizer=tokenizer_dir, seq_len=SEQ, batch_size=16))
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return clinical_documents(40_000, seed=5)


def row_matrix(table: pa.Table, column: str) -> np.ndarray:
    col = table.column(column).combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), col.type.list_size)


# ---- the exact layout on hand-made ids ----------------------------------------------------------


def test_exact_layout_with_eos_split_documents_and_padding():
    docs = pa.array([[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]], pa.list_(pa.int32()))
    table, stats = pack_table(docs, PackConfig(seq_len=4, loss_mask=True), eos_id=0, pad_id=1)
    assert table.schema.field("input_ids").type == pa.list_(pa.int32(), 4)
    assert row_matrix(table, "input_ids").tolist() == [[5, 6, 7, 0], [8, 0, 9, 10], [11, 12, 13, 0], [14, 15, 0, 1]]
    # 0 at every document start; the document cut at the end of row 1 restarts at 0 in row 2,
    # and the pad in the last row is a segment of its own
    assert row_matrix(table, "position_ids").tolist() == [[0, 1, 2, 3], [0, 1, 0, 1], [0, 1, 2, 3], [0, 1, 2, 0]]
    assert table.column("num_tokens").to_pylist() == [4, 4, 4, 3]
    assert row_matrix(table, "loss_mask").tolist() == [[1] * 4, [1] * 4, [1] * 4, [1, 1, 1, 0]]
    assert stats == {"docs": 4, "doc_tokens": 11, "eos_tokens": 4, "truncated_tokens": 0, "rows": 4,
                     "tokens": 15, "pad_tokens": 1, "dropped_tokens": 0}


def test_layout_options_drop_remainder_no_eos_and_capped_documents():
    docs = pa.array([[5, 6, 7, 8, 9, 10, 11], [], [12, 13]], pa.list_(pa.int32()))
    dropped, stats = pack_table(docs, PackConfig(seq_len=4, remainder="drop"), eos_id=0, pad_id=1)
    assert row_matrix(dropped, "input_ids").tolist() == [[5, 6, 7, 8], [9, 10, 11, 0], [0, 12, 13, 0]]
    assert row_matrix(dropped, "position_ids").tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 0, 1, 2]]
    assert stats["dropped_tokens"] == 0 and stats["rows"] == 3

    no_eos, stats = pack_table(docs, PackConfig(seq_len=4, add_eos=False, remainder="drop"), eos_id=0, pad_id=1)
    assert row_matrix(no_eos, "input_ids").tolist() == [[5, 6, 7, 8], [9, 10, 11, 12]]
    assert row_matrix(no_eos, "position_ids").tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert stats["dropped_tokens"] == 1  # token 13, left in a partial row

    capped, stats = pack_table(docs, PackConfig(seq_len=4, split_long_docs=False), eos_id=0, pad_id=1)
    assert row_matrix(capped, "input_ids").tolist() == [[5, 6, 7, 0], [0, 12, 13, 0]]
    assert stats["truncated_tokens"] == 4


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="pack.remainder"):
        PackConfig(remainder="spill").validate()
    with pytest.raises(ConfigError, match="pack.seq_len"):
        PackConfig(seq_len=1).validate()


# ---- tokenising ---------------------------------------------------------------------------------


def test_tokenize_stage_matches_the_tokenizer_and_drops_empty_texts(stage, docs):
    texts = [*docs[:30], "", f"Report ends here {EOS_TOKEN} and goes on."]
    result = stage.process(records(texts))
    kept = result.kept
    assert kept.schema.field("input_ids").type == pa.list_(pa.int32())
    assert kept.schema.field("n_tokens").type == pa.int32()
    expected = [stage.tokenizer(t, add_special_tokens=False)["input_ids"] for t in docs[:30]]
    assert kept.column("input_ids").to_pylist()[:30] == expected
    assert kept.column("n_tokens").to_pylist()[:30] == [len(e) for e in expected]
    assert result.reason_counts() == {"no_tokens": 1}
    assert result.dropped.column("id").to_pylist() == ["notes.jsonl:31"]
    assert result.counts["tokens"] == sum(kept.column("n_tokens").to_pylist())
    # a document cannot forge a document boundary: the typed EOS string is plain text
    forged = kept.column("input_ids")[-1].as_py()
    assert stage.eos_id not in forged and stage.tokenizer.decode(forged) == texts[-1]


# ---- packing real documents ---------------------------------------------------------------------


def test_packing_keeps_every_token_and_document_boundary(stage, docs):
    tokenized = stage.process(records(docs)).kept
    long_doc = " ".join(docs[:12])
    tokenized = pa.concat_tables([tokenized, stage.process(records([long_doc, docs[0]])).kept])
    lengths = tokenized.column("n_tokens").to_numpy()
    assert lengths[-2] > 3 * SEQ  # the long document spans several rows
    packed, stats = pack_table(tokenized, stage.config, stage.eos_id, stage.pad_id)

    ids, pos = row_matrix(packed, "input_ids"), row_matrix(packed, "position_ids")
    n_real = packed.column("num_tokens").to_numpy()
    assert ids.shape == (packed.num_rows, SEQ) and (n_real[:-1] == SEQ).all() and 0 < n_real[-1] <= SEQ
    stream = np.concatenate([row[:n] for row, n in zip(ids, n_real)])
    assert len(stream) == lengths.sum() + len(lengths) == stats["tokens"]
    assert (ids[-1, n_real[-1]:] == stage.pad_id).all()

    # documents come back in order, each followed by EOS
    ends = np.flatnonzero(stream == stage.eos_id)
    assert len(ends) == len(lengths) and ends[-1] == len(stream) - 1
    pieces = np.split(stream, ends + 1)[:-1]
    texts = [*docs, long_doc, docs[0]]
    assert [stage.tokenizer.decode(p[:-1]) for p in pieces] == texts

    # positions: 0 at each document start and each row start, +1 elsewhere (real tokens)
    starts = np.zeros(len(stream), bool)
    starts[np.concatenate([[0], ends[:-1] + 1])] = True
    starts[::SEQ] = True
    flat_pos = np.concatenate([row[:n] for row, n in zip(pos, n_real)])
    assert ((flat_pos == 0) == starts).all()
    assert (np.diff(flat_pos)[~starts[1:]] == 1).all()
    # the long document: its continuation rows start at position 0 and run the full row
    first = int(ends[-3]) + 1
    first_row = first // SEQ
    assert pos[first_row + 1].tolist() == list(range(SEQ))


def test_rows_do_not_depend_on_batching(stage, docs):
    tokenized = stage.process(records(docs)).kept
    whole, _ = pack_table(tokenized, stage.config, stage.eos_id, stage.pad_id)
    packer = Packer.from_config(stage.config, stage.eos_id, stage.pad_id)
    pieces, start = [], 0
    for size in [1, 7, 3, 40, 2, 1000]:
        pieces.append(packer.add(tokenized.slice(start, size)))
        start += size
    pieces.append(packer.finish())
    assert pa.concat_tables(pieces).equals(whole)


# ---- shards -------------------------------------------------------------------------------------


def test_shard_files_are_deterministic_and_the_entry_matches_the_bytes(stage, docs, tmp_path):
    batches = [records(docs[i:i + 25]) for i in range(0, len(docs), 25)]
    small_groups = TokenizeStage(dataclasses.replace(stage.config, row_group_rows=10))
    entry = pack_shard(batches, small_groups, str(tmp_path / "a" / "shard-00000.parquet"))
    again = pack_shard([records(docs)], small_groups, str(tmp_path / "b" / "shard-00000.parquet"))
    data = (tmp_path / "a" / "shard-00000.parquet").read_bytes()
    assert data == (tmp_path / "b" / "shard-00000.parquet").read_bytes()  # same rows, same bytes, however batched
    groups = pq.ParquetFile(tmp_path / "a" / "shard-00000.parquet").metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)][:-1] == [10] * (groups.num_row_groups - 1)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() == again["sha256"]
    assert entry["bytes"] == len(data)

    table = pq.read_table(tmp_path / "a" / "shard-00000.parquet")
    packed, stats = pack_table(stage.process(records(docs)).kept, stage.config, stage.eos_id, stage.pad_id)
    assert table.equals(packed)
    assert (entry["rows"], entry["tokens"], entry["seq_len"]) == (packed.num_rows, stats["tokens"], SEQ)
    assert entry["pad_tokens"] == packed.num_rows * SEQ - stats["tokens"]
    assert (entry["docs"], entry["eos_tokens"], entry["dropped"]) == (len(docs), len(docs), {})
    assert not [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp files left


def test_shard_to_s3_reads_back_in_ray_as_torch_batches(stage, docs, s3_server, s3_prefix, ray_local):
    import ray

    tokenized = stage.process(records(docs)).kept
    packed, _ = pack_table(tokenized, stage.config, stage.eos_id, stage.pad_id)
    uri = f"{s3_prefix}/packed/shard-00000.parquet"
    entry = write_packed_shard(packed, uri)
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=uri.split("/", 3)[3])["Body"].read()
    assert entry["sha256"] == hashlib.sha256(body).hexdigest()

    from medray.storage import filesystem_for

    fs, path = filesystem_for(uri)
    batches = list(ray.data.read_parquet(path, filesystem=fs).iter_torch_batches(batch_size=8))
    ids = np.concatenate([b["input_ids"].numpy() for b in batches])
    assert batches[0]["input_ids"].shape == (8, SEQ) and batches[0]["position_ids"].shape == (8, SEQ)
    assert np.array_equal(ids, row_matrix(packed, "input_ids"))
