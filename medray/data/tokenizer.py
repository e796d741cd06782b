"""Training and loading the byte-level BPE tokenizer that pack and the trainers share.

Why train one locally: nothing may come from a model hub at run time, and
a medical corpus earns its own merges (drug names, anatomy, codes split
into fewer pieces). The result is an ordinary Hugging Face folder
(`tokenizer.json` + `tokenizer_config.json`), so `AutoTokenizer` loads it
and every later stage (CPT, SFT, vLLM) reads the same file. The special
tokens are fixed up front, with stable ids 0..4, because later stages rely
on them: `<|endoftext|>` ends each packed document, `<|pad|>` fills the last
row of a shard, and the chat and image placeholders are what SFT and the
multimodal models insert. Training is deterministic and independent of
document order (the BPE trainer counts pairs and breaks ties by pair order),
and the optional subsample is drawn from a hash of each text and the seed,
so the same corpus gives the same `tokenizer.json` byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from medray import storage
from medray.data.io import JSONL_SUFFIXES, PARQUET_SUFFIXES, TEXT_SUFFIXES, iter_texts
from medray.errors import ConfigError, MedrayError
from medray.remote_dir import fetch_remote_dir, local_dir

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, IM_START_TOKEN, IM_END_TOKEN, IMAGE_TOKEN)
BYTE_ALPHABET = 256  # byte-level BPE starts from every byte, so no text is ever unknown
TOKENIZER_FILE = "tokenizer.json"
REPORT_FILE = "medray_tokenizer.json"


@dataclass
class TokenizerTrainConfig:
    """`medray tokenizer train`: a corpus in, a Hugging Face tokenizer folder out."""

    corpus: list[str] = field(default_factory=list)  # .txt (a document per line), .jsonl or .parquet files/folders
    out: str = "out/tokenizer"
    text_field: str = "text"
    vocab_size: int = 32000
    min_frequency: int = 2
    sample_rate: float = 1.0  # share of documents to train on, drawn by hash(text, seed)
    max_docs: Optional[int] = None  # noqa: UP045  (stop after this many sampled documents)
    seed: int = 0


def _check_train_args(vocab_size: int, min_frequency: int, special_tokens: Sequence[str], sample_rate: float) -> None:
    smallest = BYTE_ALPHABET + len(special_tokens)
    if vocab_size < smallest:
        raise ConfigError("vocab_size", f"{vocab_size} is below {smallest} (256 bytes + {len(special_tokens)} special tokens)")
    if min_frequency < 1:
        raise ConfigError("min_frequency", f"must be at least 1, got {min_frequency}")
    if not 0.0 < sample_rate <= 1.0:
        raise ConfigError("sample_rate", f"must be in (0, 1], got {sample_rate}")
    if EOS_TOKEN not in special_tokens or PAD_TOKEN not in special_tokens:
        raise ConfigError("special_tokens", f"must include {EOS_TOKEN} and {PAD_TOKEN}")
    if len(set(special_tokens)) != len(special_tokens):
        raise ConfigError("special_tokens", "contains duplicates")


def hash_sampled(texts: Iterable[str], sample_rate: float, seed: int) -> Iterator[str]:
    """The texts whose hash with the seed falls under `sample_rate`: independent of corpus order."""
    if sample_rate >= 1.0:
        yield from texts
        return
    threshold = int(sample_rate * 2**64)
    key = seed.to_bytes(8, "little", signed=True)
    for text in texts:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest()
        if int.from_bytes(digest, "little") < threshold:
            yield text


class _Tally:
    """Counts what the trainer consumed, as it streams past."""

    def __init__(self, texts: Iterable[str], max_docs: int | None):
        self.texts, self.max_docs, self.docs, self.chars = texts, max_docs, 0, 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            if self.max_docs is not None and self.docs >= self.max_docs:
                return
            self.docs += 1
            self.chars += len(text)
            yield text


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str, *, min_frequency: int = 2,
                    special_tokens: Sequence[str] = SPECIAL_TOKENS, seed: int = 0, sample_rate: float = 1.0,
                    max_docs: int | None = None) -> str:
    """Train byte-level BPE on `texts` and save a Hugging Face folder at `out_dir` (local or s3://)."""
    return _train(texts, vocab_size, out_dir, min_frequency=min_frequency, special_tokens=special_tokens,
                  seed=seed, sample_rate=sample_rate, max_docs=max_docs)["out"]


def _train(texts: Iterable[str], vocab_size: int, out_dir: str, *, min_frequency: int,
           special_tokens: Sequence[str], seed: int, sample_rate: float, max_docs: int | None) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special_tokens = list(special_tokens)
    _check_train_args(vocab_size, min_frequency, special_tokens, sample_rate)
    started = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tally = _Tally(hash_sampled(texts, sample_rate, seed), max_docs)
    tokenizer.train_from_iterator(iter(tally), trainer)
    if tally.docs == 0:
        raise MedrayError("no text to train the tokenizer on (the corpus is empty, or sample_rate kept nothing)")
    extra = [t for t in special_tokens if t not in (EOS_TOKEN, PAD_TOKEN)]
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                                      additional_special_tokens=extra)
    vocab = tokenizer.get_vocab()
    report = {
        "vocab_size": tokenizer.get_vocab_size(),
        "requested_vocab_size": vocab_size,
        "min_frequency": min_frequency,
        "sample_rate": sample_rate,
        "seed": seed,
        "docs": tally.docs,
        "chars": tally.chars,
        "special_tokens": {t: vocab[t] for t in special_tokens},
        "eos_id": vocab[EOS_TOKEN],
        "pad_id": vocab[PAD_TOKEN],
    }
    with tempfile.TemporaryDirectory(prefix="medray-tokenizer-") as local:
        wrapped.save_pretrained(local)
        Path(local, REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        report["sha256"] = hashlib.sha256(Path(local, TOKENIZER_FILE).read_bytes()).hexdigest()
        _publish(local, str(out_dir))
    report["out"] = str(out_dir)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _publish(local_dir: str, out_dir: str) -> None:
    """Copy a finished folder to `out_dir`, file by file, each write atomic."""
    storage.makedirs(out_dir)
    for name in sorted(os.listdir(local_dir)):
        storage.atomic_write_bytes(storage.join(out_dir, name), Path(local_dir, name).read_bytes())


# ---- corpus files -> texts ------------------------------------------------------------------------


def corpus_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The .txt / .jsonl / .parquet files under each path (a file or folder, local or s3://), sorted per path."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise MedrayError("no corpus given")
    files = []
    for path in paths:
        try:
            found = storage.list_files(str(path), suffixes=TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)
        except MedrayError as err:
            raise MedrayError(f"{err} (texts, rather than paths, go in as an iterator, e.g. iter(texts))") from None
        if not found:
            raise MedrayError(f"{path}: no .txt, .jsonl or .parquet files")
        files.extend(found)
    return files


def tokenizer_train(corpus: str | os.PathLike | Sequence[str] | Iterator[str], out: str, vocab_size: int = 32000, *,
                    min_frequency: int = 2, text_field: str = "text", sample_rate: float = 1.0,
                    max_docs: int | None = None, seed: int = 0,
                    special_tokens: Sequence[str] = SPECIAL_TOKENS) -> dict:
    """`medray tokenizer train`: train on corpus files or texts, save at `out`, return a report.

    `corpus` is a path or URI, or a list of them, or an iterator of texts
    (a generator, `iter(list_of_texts)`): a list is always read as paths.
    """
    skipped: Counter = Counter()
    if isinstance(corpus, (str, os.PathLike, list, tuple)):
        files = corpus_files(corpus)
        texts: Iterable[str] = iter_texts(files, text_field, skipped)
    else:
        files, texts = [], corpus
    report = _train(texts, vocab_size, out, min_frequency=min_frequency, special_tokens=special_tokens,
                    seed=seed, sample_rate=sample_rate, max_docs=max_docs)
    report["files"] = len(files)
    report["skipped_lines"] = dict(skipped)
    return report


def tokenizer_train_from_config(cfg: TokenizerTrainConfig) -> dict:
    if not cfg.corpus:
        raise ConfigError("corpus", "give at least one corpus file or folder")
    return tokenizer_train(list(cfg.corpus), cfg.out, cfg.vocab_size, min_frequency=cfg.min_frequency,
                           text_field=cfg.text_field, sample_rate=cfg.sample_rate, max_docs=cfg.max_docs,
                           seed=cfg.seed)


# ---- loading --------------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("MEDRAY_CACHE_DIR") or Path.home() / ".cache" / "medray")


_EXPECTED = "a folder written by `medray tokenizer train` or save_pretrained"


def fetch_tokenizer_dir(uri: str) -> Path:
    """A local copy of an s3:// tokenizer folder under `cache_root()/tokenizers`, reused while it is unchanged."""
    return fetch_remote_dir(uri, cache_root() / "tokenizers", TOKENIZER_FILE, expected=_EXPECTED)


def local_tokenizer_dir(path: str | os.PathLike) -> Path:
    """The local folder holding the tokenizer at `path` (fetched first when it is s3://)."""
    return local_dir(path, cache_root() / "tokenizers", TOKENIZER_FILE, expected=_EXPECTED)


def load_tokenizer(path: str | os.PathLike):
    """A `transformers` fast tokenizer from a local folder or s3:// prefix; never from a hub."""
    from transformers import AutoTokenizer

    local = local_tokenizer_dir(path)
    try:
        return AutoTokenizer.from_pretrained(str(local), local_files_only=True)
    except (OSError, ValueError) as err:
        raise MedrayError(f"{path}: not a loadable tokenizer ({err})") from None
