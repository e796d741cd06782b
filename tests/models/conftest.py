"""A locally trained tokenizer for the model tests: the project's special tokens at ids 0..4."""

from __future__ import annotations

import pytest

from medray.bench.corpus import generate_documents
from medray.data.tokenizer import train_tokenizer

VOCAB = 400


@pytest.fixture(scope="session")
def clinical_texts(tiny_tree) -> list[str]:
    return list(generate_documents(tiny_tree, 60_000, seed=3))


@pytest.fixture(scope="session")
def tokenizer_dir(clinical_texts, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("models-tok") / "tokenizer"
    return train_tokenizer(iter(clinical_texts), VOCAB, str(out), min_frequency=2)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test fetches s3:// models into its own cache, so none reuses another's copy."""
    monkeypatch.setenv("MEDRAY_CACHE_DIR", str(tmp_path / "cache"))
