"""One small tokenizer for the SFT tests: the project's special tokens at ids 0..4, trained once per session."""

from __future__ import annotations

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
