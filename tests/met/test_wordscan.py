"""The compiled scanner and word trie, checked against plain-Python references."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from medray.errors import MedrayError
from medray.met.normalize import normalize_text
from medray.met.wordscan import HashTable, PhraseTrie, Vocabulary, word_hash


def reference_words(text: str) -> list[tuple[int, int, str, int]]:
    """(start, end, word, sentence) by regular expressions over the normalised text."""
    norm = normalize_text(text)
    boundaries = [m.start() for m in re.finditer(r"\|", norm) if not re.fullmatch(r"\d\|\d", norm[max(m.start() - 1, 0):m.start() + 2])]
    boundaries += [m.start() for m in re.finditer(r"\n(?= *\n)", norm)]
    out = []
    for m in re.finditer(r"[^ \n|]+", norm):
        out.append((m.start(), m.end(), m.group(), sum(b < m.start() for b in boundaries)))
    return out


def test_scan_matches_reference_on_mixed_text():
    vocab = Vocabulary(["pleural", "effusion", "2", "5", "ödem"])
    text = "Pleural EFFUSION, 2.5 cm.\n\nÖdem der Lunge;\r\n\r\nno\teffusion|x 😀 effusion!\nwrapped line"
    scanned = vocab.scan(text)
    ref = reference_words(text)
    assert [(int(s), int(e)) for s, e in zip(scanned.starts, scanned.ends)] == [(s, e) for s, e, _, _ in ref]
    words = [w for _, _, w, _ in ref]
    assert scanned.ids.tolist() == [vocab.number.get(w, 0) for w in words]
    # sentence numbers may skip values; only equality between neighbours matters
    same = [a == b for a, b in zip(scanned.sentence[:-1], scanned.sentence[1:])]
    assert same == [a[3] == b[3] for a, b in zip(ref[:-1], ref[1:])]
    assert words[:6] == ["pleural", "effusion", "2", "5", "cm", "ödem"]
    assert scanned.sentence[2] == scanned.sentence[3]  # "2.5" does not end a sentence


def test_spans_round_trip_any_script():
    text = "x ödem 😀 effusion ünd"
    vocab = Vocabulary(["effusion"])
    scanned = vocab.scan(text)
    spans = scanned.spans(scanned.starts, scanned.ends).to_pylist()
    assert spans == text.split(" ")


def test_trie_is_leftmost_longest_and_stays_in_sentence():
    phrases = ["pleural effusion", "effusion", "pleural", "left pleural effusion", "a b c d"]
    vocab = Vocabulary(sorted({w for p in phrases for w in p.split()}))
    trie = PhraseTrie(vocab, phrases, list(range(len(phrases))))

    def hits(text):
        scanned = vocab.scan(text)
        s, e, v = trie.match(scanned)
        return [(phrases[k], text[scanned.starts[a]:scanned.ends[b]]) for a, b, k in zip(s, e, v)]

    assert hits("left pleural effusion") == [("left pleural effusion", "left pleural effusion")]
    assert hits("right pleural effusion") == [("pleural effusion", "pleural effusion")]
    assert hits("pleural. effusion") == [("pleural", "pleural"), ("effusion", "effusion")]
    assert hits("a b c x") == []  # a prefix of a phrase is not a match
    assert hits("pleural pleural effusion effusion") == [("pleural", "pleural"), ("pleural effusion", "pleural effusion"), ("effusion", "effusion")]
    assert hits("pleuraleffusion effusions") == []


def test_trie_agrees_with_brute_force_on_random_text():
    rng = random.Random(3)
    words = [f"w{i}" for i in range(30)]
    phrases = sorted({" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(200)})
    vocab = Vocabulary(words)
    trie = PhraseTrie(vocab, phrases, list(range(len(phrases))))
    index = {p: i for i, p in enumerate(phrases)}
    longest = max(p.count(" ") + 1 for p in phrases)
    for _ in range(50):
        tokens = [rng.choice(words + ["zz", "."]) for _ in range(60)]
        scanned = vocab.scan(" ".join(tokens))
        got = list(zip(*(a.tolist() for a in trie.match(scanned))))
        seq = [t for t in tokens if t != "."]
        sent = np.cumsum([t == "." for t in tokens])[[i for i, t in enumerate(tokens) if t != "."]]
        expected, i = [], 0
        while i < len(seq):
            best = None
            for n in range(1, longest + 1):
                if i + n <= len(seq) and sent[i + n - 1] == sent[i] and " ".join(seq[i:i + n]) in index:
                    best = (i, i + n - 1, index[" ".join(seq[i:i + n])])
            if best:
                expected.append(best)
                i = best[1] + 1
            else:
                i += 1
        assert got == expected


def test_hash_table_refuses_duplicates_and_reports_absent():
    table = HashTable(np.array([5, 9, 2**63 + 1], dtype=np.uint64), np.array([1, 2, 3]))
    assert table.get(np.array([9, 4, 2**63 + 1], dtype=np.uint64)).tolist() == [2, 0, 3]
    with pytest.raises(MedrayError, match="unique"):
        HashTable(np.array([5, 5], dtype=np.uint64), np.array([1, 2]))
    with pytest.raises(MedrayError, match="positive"):
        HashTable(np.array([5], dtype=np.uint64), np.array([0]))


def test_word_hash_is_what_the_scanner_computes():
    vocab = Vocabulary(["ödem", "x"])
    assert vocab.table.get(np.array([word_hash("ödem")], dtype=np.uint64)).tolist() == [1]
    assert vocab.scan("ÖDEM").ids.tolist() == [1]
