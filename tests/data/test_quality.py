"""The quality classifier: seed set, fastText training and scoring, the bootstrap loop, the stage, the job."""

from __future__ import annotations

import gzip
import json
import pickle
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medray.data.quality import (
    LOW_QUALITY,
    QualityConfig,
    QualityModel,
    QualityStage,
    normalize_texts,
    split_seed,
    train_model,
)
from medray.data.quality_bootstrap import bootstrap_train, quality_train
from medray.data.quality_seed import (
    BAD,
    BAD_KINDS,
    GOOD,
    HeuristicJudge,
    generate_seed,
    load_seed_file,
    make_judge,
)
from medray.data.stage import RECORD_SCHEMA
from medray.errors import ConfigError, MedrayError, SourceError
from medray.met.tree import ROOT_ID, Node, Tree, axis_node_id

# Written by hand, not by the seed generator: what the classifier must get right on text it never saw.
CLINICAL = [
    "A 67-year-old man presented with three days of productive cough, fever and pleuritic chest pain. "
    "Chest radiograph showed consolidation in the right lower lobe, and he was treated with oral "
    "amoxicillin for community-acquired pneumonia.",
    "Type 2 diabetes is managed first with lifestyle advice and metformin. If the HbA1c remains above "
    "target after three months, a second agent is added according to cardiovascular and renal risk.",
    "The echocardiogram demonstrated a dilated left ventricle with an ejection fraction of 30 percent. "
    "The patient was started on a beta blocker and an ACE inhibitor, and the dose will be titrated at follow-up.",
    "Asthma is a chronic inflammatory disease of the airways. Patients should be taught to use their "
    "inhaler correctly and to recognise the early signs of an exacerbation, such as wheezing at night.",
    "Blood cultures grew Escherichia coli, sensitive to ceftriaxone. The urinary source was confirmed on "
    "ultrasound of the kidneys, which showed mild hydronephrosis on the left side.",
    "Patients taking warfarin need regular monitoring of the INR, because many foods and medicines change "
    "its effect. Bleeding gums or dark stools should be reported to a doctor at once.",
]
JUNK = [
    "BUY CHEAP VIAGRA ONLINE!!! best price guaranteed, free shipping, order now www.pills-now.biz",
    "Home | About | Services | Blog | Contact | Privacy Policy | Cookie settings | Sitemap",
    "weight loss weight loss fast weight loss pills best weight loss diet weight loss cheap weight loss",
    "xK9#qz@@ ÃƒÂ©Ã¢â‚¬ vbn$$ 88321 ////// ~~~zz ÃƒÂ© pL0o{}",
    "| 2019 | 0.45 | 33 | n/a |\n| 2020 | 0.51 | 29 | -- |\n| 2021 | 0.48 | 31 | n/a |",
    "http://a.com/x http://b.net/y http://c.org/z http://d.info/w http://e.biz/v",
    "We use cookies to give you the best experience. Accept all cookies. Manage preferences. "
    "Copyright 2023 All rights reserved.",
    "the for of pneumonia is be very the doctor take medicine they was good health of the body make do",
]
SMALL = {"bucket": 20000, "epoch": 25}  # a small hash table keeps the model file ~3 MB


def records_table(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"id": [f"t.jsonl:{i + 1}" for i in range(n)], "text": texts, "source": ["t.jsonl"] * n,
                     "meta": ["{}"] * n}, schema=RECORD_SCHEMA)


@pytest.fixture(scope="module")
def seed_set():
    return generate_seed(150, seed=0)


@pytest.fixture(scope="module")
def model(seed_set) -> QualityModel:
    train, _ = split_seed(seed_set, 0.2, seed=0)
    return train_model(train, SMALL)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("quality") / "quality.bin")
    model.save(path)
    return path


# ---- seed set -------------------------------------------------------------------------------


def test_seed_is_deterministic_balanced_and_covers_every_kind_of_junk(seed_set):
    assert generate_seed(150, seed=0) == seed_set
    assert generate_seed(150, seed=1) != seed_set
    assert Counter(r.label for r in seed_set) == {GOOD: 150, BAD: 150}
    assert {r.kind for r in seed_set if r.label == BAD} == set(BAD_KINDS)
    assert {r.kind for r in seed_set if r.label == GOOD} == {"prose", "report"}


def test_seed_from_a_tree_writes_reports_with_its_terms():
    nodes = [Node(ROOT_ID, None, None, 0, "Medical Entity Tree", sources=["medray"])]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a.title(), sources=["medray"])
              for a in ("disease", "anatomy", "modality", "symptom")]
    nodes += [Node("T:ptx", "MET:symptom", "symptom", 2, "Pneumothorax", ["collapsed lung"]),
              Node("T:lung", "MET:anatomy", "anatomy", 2, "Lung"),
              Node("D:j93", "MET:disease", "disease", 2, "Spontaneous pneumothorax"),
              Node("M:ct", "MET:modality", "modality", 2, "Computed tomography")]
    seed = generate_seed(30, seed=0, tree=Tree.from_nodes(nodes))
    from_tree = [r.text.lower() for r in seed if r.kind == "tree_report"]
    assert len(from_tree) == 10
    assert all(any(t in text for t in ("pneumothorax", "collapsed lung", "lung", "computed tomography"))
               for text in from_tree)


def test_bad_seed_file_names_file_and_line(tmp_path):
    good = tmp_path / "seed.jsonl"
    good.write_text('{"text": "Fever and cough for three days.", "label": "good"}\n\n'
                    '{"text": "buy cheap pills", "label": "bad"}\n')
    assert [(r.label, r.kind) for r in load_seed_file(str(good))] == [(GOOD, "user"), (BAD, "user")]

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "Fever and cough.", "label": "good"}\n{"text": "oops", "label": \n')
    with pytest.raises(SourceError, match=f"{broken}:2: not valid JSON"):
        load_seed_file(str(broken))

    mislabelled = tmp_path / "mislabelled.jsonl"
    mislabelled.write_text('{"text": "a", "label": "good"}\n{"text": "b", "label": "bad"}\n'
                           '{"text": "c", "label": "spam"}\n')
    with pytest.raises(SourceError, match=f"{mislabelled}:3: 'label' must be 'good' or 'bad', not 'spam'"):
        load_seed_file(str(mislabelled))

    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"label": "good"}\n')
    with pytest.raises(SourceError, match=f"{no_text}:1: 'text' must be a non-empty string"):
        load_seed_file(str(no_text))


# ---- text and model -------------------------------------------------------------------------


def test_normalize_texts_gives_one_lower_case_line_with_punctuation_apart():
    out = normalize_texts(pa.array(["Chest X-ray, 2 views:\nNo Effusion.", None, "Été 5mg"])).to_pylist()
    assert out == ["chest x - ray ,  0 views :  no effusion . ", "", "été 0mg"]
    assert normalize_texts(["Abcdef"], max_chars=3).to_pylist() == ["abc"]
    assert normalize_texts([]).to_pylist() == []
    sliced = pa.array(["A.", "B!", "C"], pa.large_string()).slice(1)  # Arrow slices keep an offset
    assert normalize_texts(sliced).to_pylist() == ["b ! ", "c"]


def test_model_separates_held_out_good_and_bad_text(seed_set, model):
    _, holdout = split_seed(seed_set, 0.2, seed=0)
    assert len(holdout) >= 40
    assert model.accuracy(holdout, 0.5) >= 0.95
    assert model.accuracy(generate_seed(200, seed=7), 0.5) >= 0.95  # a fresh draw of the generator
    clinical, junk = model.score(CLINICAL), model.score(JUNK)
    assert clinical.dtype == np.float32 and clinical.min() >= 0.8, clinical
    assert junk.max() <= 0.3, junk


def test_batch_scores_equal_fasttext_per_line_predictions(model):
    texts = CLINICAL + JUNK
    lines = normalize_texts(texts).to_pylist()
    one_by_one = []
    for line in lines:
        [(prob, label)] = model._ft.predict(line + "\n", 1, 0.0, "strict")
        one_by_one.append(prob if label == "__label__good" else 1.0 - prob)
    np.testing.assert_allclose(model.score(texts), np.clip(one_by_one, 0, 1), atol=1e-6)
    # independent of how records are split into batches
    np.testing.assert_array_equal(model.score(texts), np.concatenate([model.score(texts[:5]), model.score(texts[5:])]))


def test_training_is_reproducible_bit_for_bit(seed_set, model_file, tmp_path):
    train, _ = split_seed(seed_set, 0.2, seed=0)
    again = train_model(list(reversed(train)), SMALL)  # input order does not matter either
    again.save(str(tmp_path / "again.bin"))
    assert (tmp_path / "again.bin").read_bytes() == open(model_file, "rb").read()
    other_seed = train_model(train, {**SMALL, "seed": 1})
    assert not np.array_equal(other_seed.score(CLINICAL), again.score(CLINICAL))


def test_training_needs_both_labels(seed_set):
    with pytest.raises(MedrayError, match="both labels"):
        train_model([r for r in seed_set if r.label == GOOD], SMALL)


# ---- judge and bootstrap --------------------------------------------------------------------


def test_heuristic_judge_labels_clear_cases_and_abstains_otherwise():
    judge = HeuristicJudge()
    assert judge(CLINICAL) == [GOOD] * len(CLINICAL)
    assert judge(JUNK[:3]) == [BAD] * 3
    assert judge(["the the patient of is be doctor. take medicine for the body. good health very much for to ok."]) == [BAD]
    assert judge([JUNK[-1]]) == [None]  # word salad with no sentence marks: a rule cannot tell, so it abstains
    assert judge(["Too short to say."]) == [None]
    assert judge(["The weather was pleasant and we walked along the river before lunch with our friends."]) == [None]
    assert make_judge("none") is None and isinstance(make_judge("heuristic"), HeuristicJudge)
    with pytest.raises(ConfigError, match="'judge': unknown judge 'gpt'"):
        make_judge("gpt")


class CountingJudge:
    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return HeuristicJudge()(texts)


def test_bootstrap_judges_only_borderline_texts_and_holds_accuracy(tmp_path):
    seed = generate_seed(30, seed=0)
    corpus = [r.text for r in generate_seed(150, seed=3)] + CLINICAL + JUNK
    cfg = QualityConfig(**SMALL, rounds=2, holdout_fraction=0.3, max_judge_per_round=25,
                        model_path=str(tmp_path / "q.bin"))
    judge = CountingJudge()
    path, report = bootstrap_train(seed, iter(corpus), cfg, judge=judge)

    # The round-1 scores come from the seed-only model, which retraining reproduces exactly.
    train_seed, _ = split_seed(seed, cfg.holdout_fraction, cfg.seed)
    scores = train_model(train_seed, cfg).score(corpus)
    distance = np.abs(scores - cfg.threshold)
    borderline = np.flatnonzero(distance < cfg.band)
    expected = borderline[np.lexsort((borderline, distance[borderline]))][: cfg.max_judge_per_round]
    assert len(expected) > 0
    assert judge.calls[0] == [corpus[i] for i in expected]

    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[1]["borderline"] == len(borderline)
    assert [r["judge_calls"] for r in rounds[1:] if r["judge_calls"]] == [len(c) for c in judge.calls]
    assert all(len(c) <= cfg.max_judge_per_round for c in judge.calls)
    asked = [t for call in judge.calls for t in call]
    assert len(asked) == len(set(asked))  # a text is never asked twice
    for r in rounds:
        assert sum(r["label_counts"].values()) == r["train_size"]
    r1 = rounds[1]
    assert r1["judged_good"] + r1["judged_bad"] + r1["judge_abstained"] == r1["judge_calls"]
    assert r1["pseudo_good"] > 0 and r1["pseudo_bad"] > 0
    assert r1["train_size"] == report["seed_train"] + r1["pseudo_good"] + r1["pseudo_bad"] + r1["judged_total"]
    assert report["corpus_docs"] == len(corpus)
    assert report["heldout_accuracy"] >= rounds[0]["heldout_accuracy"]
    assert report["heldout_accuracy"] >= 0.9  # 19 held-out seed texts
    assert QualityModel.load(path).accuracy(generate_seed(100, seed=11), 0.5) >= 0.95


def test_bootstrap_is_deterministic(tmp_path):
    seed = generate_seed(30, seed=0)
    corpus = [r.text for r in generate_seed(60, seed=3)]
    reports = []
    for name in ("a", "b"):
        cfg = {**SMALL, "rounds": 1, "model_path": str(tmp_path / f"{name}.bin")}
        _, report = bootstrap_train(seed, corpus, cfg, judge=HeuristicJudge())
        reports.append([{k: v for k, v in r.items() if "per_cpu_s" not in k} for r in report["rounds"]])
    assert reports[0] == reports[1]
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


# ---- stage ----------------------------------------------------------------------------------


def test_stage_drops_junk_as_low_quality_and_keeps_clinical_text(model_file):
    stage = QualityStage({"model_path": model_file, "threshold": 0.5})
    assert (stage.name, stage.stateful) == ("quality", True)
    stage.setup()
    batch = records_table(CLINICAL + JUNK)
    result = stage(batch)
    assert result.kept.column("text").to_pylist() == CLINICAL
    assert result.dropped.column("text").to_pylist() == JUNK
    assert result.reason_counts() == {LOW_QUALITY: len(JUNK)}
    assert result.kept.schema.field("quality").type == pa.float32()
    assert min(result.kept.column("quality").to_pylist()) >= 0.5
    assert max(result.dropped.column("quality").to_pylist()) < 0.5
    assert result.kept.num_rows + result.dropped.num_rows == batch.num_rows
    # a re-scored table gets a fresh column, not a second one
    again = stage(result.kept)
    assert again.kept.column_names.count("quality") == 1 and again.kept.num_rows == len(CLINICAL)


def test_stage_loads_its_model_from_s3(model, model_file, s3_prefix):
    uri = f"{s3_prefix}/quality.bin"
    model.save(uri)
    stage = QualityStage(QualityConfig(model_path=uri))
    stage.setup()
    local = QualityStage(QualityConfig(model_path=model_file))
    batch = records_table(CLINICAL + JUNK)
    assert stage(batch).kept.equals(local(batch).kept)
    # what a Ray actor receives: the config, not the loaded model
    shipped = pickle.loads(pickle.dumps(stage))
    assert shipped._model is None
    shipped.setup()
    assert shipped(batch).dropped.num_rows == len(JUNK)


def test_stage_with_a_missing_or_broken_model_says_so(tmp_path):
    with pytest.raises(MedrayError, match="quality model not found"):
        QualityStage({"model_path": str(tmp_path / "none.bin")}).setup()
    (tmp_path / "junk.bin").write_bytes(b"not a model")
    with pytest.raises(MedrayError, match="junk.bin: not a fastText model"):
        QualityStage({"model_path": str(tmp_path / "junk.bin")}).setup()


# ---- job ------------------------------------------------------------------------------------


def test_quality_train_reads_a_corpus_folder_and_writes_model_and_report(tmp_path):
    texts = [r.text for r in generate_seed(40, seed=5)]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with gzip.open(corpus / "a.jsonl.gz", "wt") as f:
        for t in texts[:30]:
            f.write(json.dumps({"text": t, "url": "x"}) + "\n")
        f.write("{not json\n")
    pq.write_table(pa.table({"text": texts[30:70]}), corpus / "b.parquet")
    (corpus / "c.txt").write_text("\n".join(t.replace("\n", " ") for t in texts[70:]) + "\n")
    conf = {**SMALL, "rounds": 1, "seed_docs": 40, "corpus": [str(corpus)],
            "model_path": str(tmp_path / "out" / "quality.bin")}
    report = quality_train(conf)
    assert report["corpus_docs"] == 80
    assert report["corpus_skipped"] == {"bad_json": 1}  # counted under its reject reason
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert report["heldout_accuracy"] >= 0.9
    assert json.loads((tmp_path / "out" / "quality.report.json").read_text())["model_path"] == conf["model_path"]
    assert QualityModel.load(conf["model_path"]).score(CLINICAL[:1])[0] >= 0.5

    with pytest.raises(ConfigError, match="'epochs': unknown key"):
        quality_train({"epochs": 3})
    with pytest.raises(ConfigError, match="'band': 0.7 is out of range"):
        quality_train({"band": 0.7})
    with pytest.raises(ConfigError, match="'judge'"):
        quality_train({**conf, "judge": "oracle"})
