"""The fast byte-level BPE encoder gives Hugging Face's ids, token for token, on any text."""

from __future__ import annotations

import json
import pickle
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

from medray.data import bpe_pretokenize
from medray.data.bpe_pretokenize import GPT2_PATTERN, char_classes, unsupported_reason
from medray.data.fast_bpe import FastByteLevelBPE
from medray.data.io import iter_texts
from medray.data.pack import PackConfig, TokenizeStage, encode_texts
from medray.data.synthetic import generate_corpus
from medray.data.tokenizer import EOS_TOKEN, corpus_files, train_tokenizer

SPACES = ["\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)),
          "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", " "]
NOT_REGEX_SPACES = ["\x1c", "\x1d", "\x1e", "\x1f", "\u180e", "\u200b", "\u2060", "\ufeff"]

ADVERSARIAL = [
    # whitespace runs, leading and trailing
    "a \t b", "a  b", "a   b", "a\t\tb", "a \n b", "a\n\n\nb", " lead", "  lead", "\tlead", "\t lead",
    "trail ", "trail  ", "trail\n", "trail \n", " ", "  ", "\n", "\r\n", "x \u3000 y", "x\u3000 y",
    "x \u3000y", "line one\r\nline two\r\n\r\n  indented", " " * 1000 + "x", "\n" * 300, "a\x85b \xa0c",
    # contractions, case-sensitive, and apostrophes that are not
    "it's", "IT'S", "it'S", "we'll", "we'LL", "They're", "THEY'RE", "I've", "I'm", "he'd", "'s", "'t",
    "'re", "'ve", "'m", "'ll", "'d", "'x", "''s", "' s", " 's", " 'll", "don't", "rock'n'roll", "'", "''",
    "'''ll", "5's", "'5", "\u2019s", "'sam", "'rex", "'llama", "'d'd'd", "Sjögren's syndrome", "'S 's 'Ll",
    # digits of many scripts
    "١٢٣ ٤٥٦", "۱۲۳", "１２３ｍｇ", "x²³ y₂", "½ ⅓ ¼ ⅞", "Ⅻ ⅻ", "①②③", "१२३ ४", "𝟙𝟚𝟛", "12.5mg", "3,000",
    "-7", "1e10", "10^6", "BP 120/80, SpO2 95%", "0x1F", "٣rd", "7\u0663\uff17",
    # letters of many scripts, combining marks, odd letters
    "中文医学报告", "肺炎 患者", "مرحبا بالعالم", "नमस्ते दुनिया", "क्षत्रिय", "한국어 진단", "Ελληνικά", "Русский язык",
    "עברית", "ภาษาไทย", "日本語のテキスト", "ǅemal", "ʰa", "Ⓐ Ⓑ", "ﬁne", "naïve naïve", "β-blocker",
    "abc中文def", "x1y2z3", "CO2", "\u0301", " \u0301", "a\u0301", "\u0301\u0301x", "e\u0301\u0302 n\u0303",
    # emoji, ZWJ sequences, skin tones, flags, keycaps
    "😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "❤️", "a😀b", " 😀", "1️⃣", "🇺🇸🇫🇷", "😀 😀\t😀",
    # around the surrogates, private use, noncharacters, controls, unassigned
    "\ud7ff", "\ue000", "\uf8ff", "\ufffd", "\uffff", "\ufeff text", "\U000f0000", "\U0010fffd", "\U0010ffff",
    "\x00", "\x01", "\x7f", "a\x00b", "\u0378", "\u1c89", "x \u0378 y", "\U000e0080", "\u05ff",
    # special tokens typed as text
    EOS_TOKEN, "<|pad|>", f"x{EOS_TOKEN}y", "<image>", f"The end. {EOS_TOKEN}\n\nNext",
    # long pieces
    "=" * 5000, "a" * 3000, "-" * 200 + "x", "9" * 400,
    "",
    *NOT_REGEX_SPACES, *(f"a{w}b" for w in NOT_REGEX_SPACES),
]

FUZZ_POOL = ([*SPACES, *NOT_REGEX_SPACES, "'", "'", "s", "t", "r", "e", "v", "m", "l", "d", "S", "L", "a", "Z", "1",
              "9", "!", ".", "-", "é", "\u0301", "中", "ب", "क", "\u094d", "٣", "²", "½", "😀", "\u200d", "🏽",
              "\ue000", "\u0378", "<", "|", ">"])


def fuzz_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(FUZZ_POOL, size=rng.integers(1, 24))) for _ in range(n)]


def whitespace_pairs() -> list[str]:
    return [t for a in SPACES for b in SPACES for t in (f"a{a}{b}b", f"a{a}{b}", f"{a}{b}b", f"{a}x{b}")]


@pytest.fixture(scope="module")
def documents(tmp_path_factory, tiny_tree) -> list[str]:
    root = str(tmp_path_factory.mktemp("fast-bpe") / "corpus")
    generate_corpus(tiny_tree, root, n_docs=3000, seed=7)
    return list(iter_texts(corpus_files(root)))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, documents) -> str:
    out = tmp_path_factory.mktemp("fast-bpe-tok") / "tokenizer"
    training = documents[:1500] + [t for t in ADVERSARIAL if "\x00" not in t] * 3
    return train_tokenizer(iter(training), 1200, str(out))


@pytest.fixture(scope="module")
def stage(tokenizer_dir) -> TokenizeStage:
    stage = TokenizeStage(PackConfig(tokenizer=tokenizer_dir, seq_len=64))
    stage.setup()
    return stage


@pytest.fixture()
def encoder(stage) -> FastByteLevelBPE:
    return FastByteLevelBPE(stage.backend)


def hf_ids(stage, texts) -> pa.ListArray:
    return encode_texts(stage.backend, pa.array(texts, pa.string()))


def assert_same(encoded: pa.ListArray, expected: pa.ListArray, texts) -> None:
    assert encoded.type == pa.list_(pa.int32())
    if not encoded.equals(expected):
        bad = [i for i in range(len(texts)) if encoded[i] != expected[i]]
        raise AssertionError(f"{len(bad)} texts differ, first: {[texts[i] for i in bad[:5]]!r}")


# ---- exact on real and hostile text ---------------------------------------------------------------


def test_generated_documents_match_hf_cold_and_warm(stage, encoder, documents):
    texts = pa.array(documents, pa.string())
    expected = encode_texts(stage.backend, texts)
    assert len(documents) > 2900 and len(expected.flatten()) > 500_000
    assert_same(encoder.encode(texts), expected, documents)
    cold = dict(encoder.stats)
    assert cold["texts"] == len(documents) and cold["fallback_texts"] == 0
    assert cold["misses"] < 0.05 * cold["pieces"]  # unique pieces are few: most repeat
    assert_same(encoder.encode(texts), expected, documents)
    warm_hits = encoder.stats["hits"] - cold["hits"]
    assert warm_hits == cold["pieces"] and encoder.stats["misses"] == cold["misses"]  # all cached now
    assert encoder.cache_entries == cold["misses"]


def test_adversarial_texts_match_hf(stage, encoder):
    texts = [*ADVERSARIAL, None, *whitespace_pairs(), *fuzz_texts(3000, seed=1)]
    encoded = encoder.encode(pa.array(texts, pa.string()))
    assert_same(encoded, hf_ids(stage, texts), texts)
    assert encoded[ADVERSARIAL.index("")].as_py() == [] and encoded[len(ADVERSARIAL)].as_py() == []
    assert stage.eos_id not in encoded[ADVERSARIAL.index(EOS_TOKEN)].as_py()
    # only texts holding a code point Python's tables do not know went to Hugging Face whole
    unknown = sum(any(unicodedata.category(ch) == "Cn" for ch in t or "") for t in texts)
    assert 0 < encoder.stats["fallback_texts"] == unknown


def test_every_bmp_code_point_and_a_sample_above(stage, encoder):
    codes = [c for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    codes += list(range(0x1F000, 0x1FB00)) + list(range(0x10000, 0x110000, 97))
    texts = [p for ch in map(chr, codes) for p in (f"a{ch}1", f" {ch}!", ch + ch, f"'{ch} ")]
    assert_same(encoder.encode(pa.array(texts, pa.string())), hf_ids(stage, texts), texts)


def test_class_table_agrees_with_the_regex_engine_and_the_check_catches_a_wrong_entry():
    classes = char_classes()
    assert classes[ord("a")] == bpe_pretokenize.LETTER and classes[ord("٣")] == bpe_pretokenize.NUMBER
    assert classes[0x3000] == bpe_pretokenize.SPACE and classes[0x1C] == bpe_pretokenize.OTHER  # str.isspace says yes
    assert classes[0x0378] == bpe_pretokenize.UNKNOWN and classes[0xD800] == bpe_pretokenize.UNKNOWN
    engine = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    wrong = {bpe_pretokenize.LETTER: [0x41, 0x31, 0x4E00, 0x3000], bpe_pretokenize.NUMBER: [0x661], bpe_pretokenize.SPACE: [0x1C, 0x20]}
    for cls, codes in wrong.items():
        assert bpe_pretokenize._engine_rejects(np.array(codes), cls, engine) == [c for c in codes if classes[c] != cls]


# ---- batching and the cache bound ----------------------------------------------------------------


def test_same_ids_whatever_the_batch_split(stage, documents):
    texts = [*documents[:300], *ADVERSARIAL[:60]]
    expected = hf_ids(stage, texts)
    for batch_bytes in (1, 700, 1 << 22):
        assert_same(FastByteLevelBPE(stage.backend, batch_bytes=batch_bytes).encode(pa.array(texts)), expected, texts)
    encoder = FastByteLevelBPE(stage.backend)
    bounds = [0, 1, 8, 9, 100, 101, 250, len(texts)]
    slices = [encoder.encode(pa.array(texts)[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert pa.concat_arrays(slices).equals(expected)
    chunked = pa.chunked_array([pa.array(texts[:40]), pa.array(texts[40:])])
    assert encoder.encode(chunked).equals(expected)


def test_a_tiny_cache_bound_holds_and_output_stays_exact(stage, documents):
    encoder = FastByteLevelBPE(stage.backend, max_entries=50, max_bytes=300, batch_bytes=2000)
    texts = documents[:200]
    expected = hf_ids(stage, texts)
    for _ in range(2):
        assert_same(encoder.encode(pa.array(texts)), expected, texts)
        assert encoder.cache_entries <= 50 and encoder.cache_bytes <= 300
    assert len(encoder.entry_hash) <= 50 and len(encoder.arena) <= 300 and len(encoder.id_arena) <= 300
    assert encoder.stats["cache_resets"] > 2 and encoder.stats["hits"] > 0
    # pieces longer than max_piece_bytes are never cached, yet encoded right
    long_pieces = ["=" * 500, "b" * 300 + "  " + "=" * 500]
    short_cache = FastByteLevelBPE(stage.backend, max_piece_bytes=4)
    assert_same(short_cache.encode(pa.array(long_pieces * 2)), hf_ids(stage, long_pieces * 2), long_pieces * 2)
    assert short_cache.cache_entries == 1  # " ", the only piece of 4 bytes or fewer


# ---- which tokenizers are handled --------------------------------------------------------------------


def variant(stage, change) -> Tokenizer:
    backend = Tokenizer.from_str(stage.backend.to_str())
    backend.encode_special_tokens = True
    change(backend)
    return backend


def test_unsupported_tokenizers_are_refused(stage):
    def prefix_space(b):
        b.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)

    def no_regex(b):
        b.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    def normalizer(b):
        b.normalizer = normalizers.NFC()

    def literal_specials_off(b):
        b.encode_special_tokens = False

    def plain_added_token(b):
        b.add_tokens(["pleural effusion"])

    def other_split(b):
        b.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\p{L}+|\s+|[^\s\p{L}]+"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    def truncation(b):
        b.enable_truncation(16)

    def dropout(b):
        spec = json.loads(b.to_str())
        spec["model"]["dropout"] = 0.1
        b.model = Tokenizer.from_str(json.dumps(spec)).model

    for change, reason in [(prefix_space, "add_prefix_space"), (no_regex, "use_regex"), (normalizer, "normalizer"),
                           (literal_specials_off, "encode_special_tokens"), (plain_added_token, "not special"),
                           (other_split, "Sequence"), (truncation, "truncation"), (dropout, "dropout")]:
        backend = variant(stage, change)
        assert reason in unsupported_reason(backend), change.__name__
        assert FastByteLevelBPE.from_backend(backend) is None
    assert unsupported_reason(stage.backend) is None


def test_the_split_then_byte_level_form_is_handled_exactly(stage, documents):
    def split_form(b):
        b.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(GPT2_PATTERN), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    backend = variant(stage, split_form)
    encoder = FastByteLevelBPE.from_backend(backend)
    assert encoder is not None
    texts = [*documents[:200], *ADVERSARIAL, *whitespace_pairs(), *fuzz_texts(1000, seed=2)]
    assert_same(encoder.encode(pa.array(texts)), encode_texts(backend, pa.array(texts)), texts)
    assert_same(encoder.encode(pa.array(texts)), hf_ids(stage, texts), texts)


# ---- in the tokenize stage -------------------------------------------------------------------------


def records(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [f"n.jsonl:{i + 1}" for i in range(n)], "text": texts, "source": ["n.jsonl"] * n,
                     "meta": ["{}"] * n})


def test_tokenize_stage_uses_it_ships_without_it_and_falls_back(stage, documents, tokenizer_dir, tmp_path):
    texts = [*documents[:50], "", *ADVERSARIAL[:40]]
    expected = hf_ids(stage, texts).to_pylist()
    assert isinstance(stage.encoder, FastByteLevelBPE)
    before = stage.encoder.stats["texts"]
    result = stage.process(records(texts))
    assert stage.encoder.stats["texts"] == before + len(texts)
    assert result.kept.column("input_ids").to_pylist() == [ids for ids in expected if ids]
    assert result.reason_counts() == {"no_tokens": sum(not ids for ids in expected)}

    shipped = pickle.loads(pickle.dumps(stage))
    assert shipped.encoder is None and shipped.backend is None
    shipped.setup()
    assert isinstance(shipped.encoder, FastByteLevelBPE)

    hf_only = TokenizeStage(PackConfig(tokenizer=tokenizer_dir, fast_encoder=False))
    hf_only.setup()
    assert hf_only.encoder is None
    assert hf_only.process(records(texts)).kept.column("input_ids").to_pylist() == [ids for ids in expected if ids]

    prefixed = tmp_path / "prefixed"
    shutil.copytree(tokenizer_dir, prefixed)
    spec = json.loads((prefixed / "tokenizer.json").read_text())
    spec["pre_tokenizer"]["add_prefix_space"] = True
    Path(prefixed, "tokenizer.json").write_text(json.dumps(spec))
    other = TokenizeStage(PackConfig(tokenizer=str(prefixed)))
    other.setup()
    assert other.encoder is None
    kept = other.process(records(texts)).kept.column("input_ids").to_pylist()
    assert kept == [ids for ids in encode_texts(other.backend, pa.array(texts)).to_pylist() if ids]
    assert kept[0] != expected[0]  # the prefix space changes the first token
