"""The locally trained tokenizer: Hugging Face loadable offline, deterministic, from local folders and S3."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medray.bench.corpus import generate_documents
from medray.data.tokenizer import (
    EOS_TOKEN,
    IM_END_TOKEN,
    IM_START_TOKEN,
    IMAGE_TOKEN,
    PAD_TOKEN,
    REPORT_FILE,
    SPECIAL_TOKENS,
    TOKENIZER_FILE,
    hash_sampled,
    load_tokenizer,
    tokenizer_train,
    train_tokenizer,
)
from medray.errors import ConfigError, MedrayError
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id

VOCAB = 600


def small_tree() -> Tree:
    """A few terms per axis: enough for generate_documents to write varied clinical sentences."""
    terms = {
        "disease": ["pleural effusion", "pneumonia", "pulmonary embolism", "heart failure", "sarcoidosis"],
        "anatomy": ["left lung", "right hemithorax", "mediastinum", "liver", "cardiac silhouette"],
        "modality": ["Chest radiograph", "CT scan", "Ultrasound", "MRI"],
        "symptom": ["dyspnea", "cough", "fever", "chest pain", "atelectasis", "consolidation"],
    }
    nodes = [Node(ROOT_ID, None, None, 0, "Medical Entity Tree")]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a.title()) for a in AXES]
    for axis, names in terms.items():
        nodes += [Node(f"T:{axis[:3]}{i}", axis_node_id(axis), axis, 2, name) for i, name in enumerate(names)]
    return Tree.from_nodes(nodes)


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return list(generate_documents(small_tree(), 300_000, seed=7))


@pytest.fixture(scope="module")
def trained(documents, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(iter(documents), VOCAB, str(out), min_frequency=2)
    return out


def test_trained_tokenizer_loads_offline_with_autotokenizer(trained, documents, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(str(trained), local_files_only=True)
    assert len(tok) == VOCAB
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id) == (EOS_TOKEN, 0, PAD_TOKEN, 1)
    assert tok.convert_tokens_to_ids([IM_START_TOKEN, IM_END_TOKEN, IMAGE_TOKEN]) == [2, 3, 4]
    for text in [*documents[:20], "Temp 38.5°C, naïve patient’s CXR — no effusion. 肺炎"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    # merges learned from the corpus: a frequent medical word is one or two tokens, not one per byte
    assert len(tok(" effusion", add_special_tokens=False)["input_ids"]) <= 2
    # the placeholders are single tokens wherever they appear
    ids = tok(f"{IM_START_TOKEN}user\n{IMAGE_TOKEN} describe{IM_END_TOKEN}", add_special_tokens=False)["input_ids"]
    assert [i for i in ids if i < len(SPECIAL_TOKENS)] == [2, 4, 3]
    report = json.loads((trained / REPORT_FILE).read_text())
    assert report["eos_id"] == 0 and report["pad_id"] == 1 and report["docs"] == len(documents)


def test_training_is_deterministic_and_independent_of_document_order(trained, documents, tmp_path):
    shuffled = list(documents)
    random.Random(1).shuffle(shuffled)
    report = tokenizer_train(iter(shuffled), str(tmp_path / "again"), VOCAB)
    reference = (trained / TOKENIZER_FILE).read_bytes()
    assert (tmp_path / "again" / TOKENIZER_FILE).read_bytes() == reference
    assert report["vocab_size"] == VOCAB and report["docs"] == len(documents)


def test_hash_sample_depends_on_seed_not_order(documents):
    first = list(hash_sampled(documents, 0.3, seed=1))
    assert 0.2 * len(documents) < len(first) < 0.4 * len(documents)
    assert sorted(hash_sampled(reversed(documents), 0.3, seed=1)) == sorted(first)
    assert sorted(hash_sampled(documents, 0.3, seed=2)) != sorted(first)


def test_train_from_corpus_files(documents, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n".join(documents[:100]) + "\n\n")
    with gzip.open(corpus / "b.jsonl.gz", "wt") as f:
        for i, text in enumerate(documents[100:200]):
            f.write(json.dumps({"body": text, "n": i}) + "\n")
    pq.write_table(pa.table({"body": documents[200:300]}), corpus / "c.parquet")
    (corpus / "notes.md").write_text("not a corpus file")
    pq.write_table(pa.table({"text": documents[:5]}), tmp_path / "other.parquet")
    with pytest.raises(MedrayError, match="other.parquet: no 'body' column"):
        tokenizer_train(str(tmp_path / "other.parquet"), str(tmp_path / "x"), 500, text_field="body")
    report = tokenizer_train(str(corpus), str(tmp_path / "tok"), 500, text_field="body")
    assert (report["files"], report["docs"], report["vocab_size"]) == (3, 300, 500)
    assert report["chars"] == sum(len(d) for d in documents[:300])
    assert load_tokenizer(tmp_path / "tok").decode(load_tokenizer(tmp_path / "tok")(documents[5])["input_ids"]) == documents[5]


def test_user_errors_name_the_problem(documents, tmp_path):
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(iter(documents), 100, str(tmp_path / "small"))
    with pytest.raises(MedrayError, match="no text"):
        train_tokenizer(iter([]), 500, str(tmp_path / "empty"))
    with pytest.raises(MedrayError, match="iter"):
        tokenizer_train(["The patient presents with cough."], str(tmp_path / "t"), 500)
    with pytest.raises(MedrayError, match=f"{tmp_path / 'missing'}.*tokenizer.json"):
        load_tokenizer(tmp_path / "missing")
    assert not (tmp_path / "empty").exists()


def test_tokenizer_to_and_from_s3_is_cached_by_content(trained, documents, s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDRAY_CACHE_DIR", str(tmp_path / "cache"))
    uri = f"{s3_prefix}/tokenizer"
    report = tokenizer_train(iter(documents), uri, VOCAB)
    assert report["out"] == uri and report["sha256"]
    remote = load_tokenizer(uri)
    local = load_tokenizer(trained)
    assert remote(documents[0])["input_ids"] == local(documents[0])["input_ids"]
    assert (remote.eos_token_id, remote.pad_token_id) == (0, 1)
    cached = sorted((tmp_path / "cache" / "tokenizers").iterdir())
    assert len(cached) == 1 and (cached[0] / TOKENIZER_FILE).read_bytes() == (trained / TOKENIZER_FILE).read_bytes()
    load_tokenizer(uri + "/")
    assert len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 1  # reused, not fetched again
    tokenizer_train(iter(documents[:200]), uri, 500)  # a new upload at the same URI
    assert len(load_tokenizer(uri)) == 500
    assert len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 2
    with pytest.raises(MedrayError, match="no tokenizer.json"):
        load_tokenizer(f"{s3_prefix}/nothing-here")
