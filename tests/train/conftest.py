"""Shared inputs of the training tests: a small SFT tokenizer, and packed CPT shards from real text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medray.data.tokenizer import train_tokenizer

VOCAB = 400
# test_sft_data sizes its rows against exactly this tokenizer (its CoT row is 120 tokens, at max_len=120);
# training is deterministic, so this corpus and vocabulary give the same ids in every session.
CLINICAL_SENTENCES = [
    "The chest radiograph shows a small left pleural effusion without pneumothorax.",
    "Patient presents with fever and productive cough; consolidation in the right lower lobe suggests pneumonia.",
    "Which side is the effusion on? Think about the meniscus sign and blunting of the angle.",
]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("train-tok") / "tokenizer"
    return train_tokenizer(iter(CLINICAL_SENTENCES * 40), VOCAB, str(out), min_frequency=1)


# ---- packed CPT shards from real text --------------------------------------------------------------

HPO_OBO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ontology" / "hp.obo"
CPT_SEQ_LEN = 64


@pytest.fixture(scope="session")
def hpo_definitions() -> list[str]:
    """16k real phenotype definitions from the Human Phenotype Ontology (../shared/data)."""
    if not HPO_OBO.is_file():
        pytest.skip(f"{HPO_OBO} is absent: the CPT tests train on real text from ../shared/data")
    return re.findall(r'^def: "(.*?)"', HPO_OBO.read_text(), re.M)


@pytest.fixture(scope="session")
def cpt_data(hpo_definitions, tmp_path_factory) -> dict:
    """A tokenizer and two packed shards (64-token rows) made by the data engine's own pack stage."""
    import pyarrow as pa

    from medray.data.pack import PackConfig, TokenizeStage, pack_table, write_packed_shard

    root = tmp_path_factory.mktemp("cpt")
    tokenizer = train_tokenizer(iter(hpo_definitions), 512, str(root / "tokenizer"))
    config = PackConfig(tokenizer=tokenizer, seq_len=CPT_SEQ_LEN)
    stage = TokenizeStage(config)
    stage.setup()
    for i in range(2):
        docs = stage.process(pa.table({"text": hpo_definitions[i * 1200:(i + 1) * 1200]})).kept
        packed, _ = pack_table(docs.column("input_ids"), config, stage.eos_id, stage.pad_id)
        write_packed_shard(packed, str(root / "shards" / f"part-{i:05d}.parquet"))
    return {"tokenizer": tokenizer, "shards": str(root / "shards"), "root": root}
