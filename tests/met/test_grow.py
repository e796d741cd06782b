import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medray.errors import MedrayError
from medray.met.attach_rules import (
    LexicalIndex,
    contradiction,
    not_narrower,
    parse_name,
    sibling_reason,
)
from medray.met.embed import Embedder, get_embedder
from medray.met.grow import (
    ARBITERS,
    RuleArbiter,
    grow_tree,
    grown_node_id,
    register_arbiter,
    resolve_arbiter,
)
from medray.met.literature import literature_corpus
from medray.met.mining import (
    count_candidates_ray,
    fragment_shares,
    is_generic_phrase,
    mine_candidates,
)
from medray.met.tree import AXES, ROOT_ID, Node, Tree, axis_node_id

SENTENCES = [
    "The infant had hepatosplenomegaly and severe viral pneumonia.",
    "Tuberous sclerosis complex is a genetic disorder causing benign tumors in many organs.",
    "Findings consistent with Down syndrome and atrial septal defects; no pleural effusions.",
    "Chronic kidney disease with diabetic nephropathy and iron deficiency anemia.",
    "Diagnosis of squamous cell carcinoma of the lung; the prognosis is poor.",
    "Recurrent headaches with nausea, possible meningitis.",
]


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def base_tree(extra: list[Node] = ()) -> Tree:
    nodes = [Node(ROOT_ID, None, None, 0, "root")]
    nodes += [Node(axis_node_id(a), ROOT_ID, a, 1, a) for a in AXES]
    nodes += [
        Node("D:resp", "MET:disease", "disease", 2, "Diseases of the respiratory system", codes=["ICD10CM:J00-J99"]),
        Node("D:pneu", "D:resp", "disease", 3, "Pneumonia", synonyms=["lung infection"], codes=["ICD10CM:J18"]),
        Node("D:fx", "MET:disease", "disease", 2, "Fracture of femur", codes=["ICD10CM:S72"]),
        Node("A:lung", "MET:anatomy", "anatomy", 2, "lung"),
        Node("A:femur", "MET:anatomy", "anatomy", 2, "femur"),
        Node("S:cough", "MET:symptom", "symptom", 2, "cough"),
        *extra,
    ]
    return Tree.from_nodes(nodes)


# ---- mining -------------------------------------------------------------------------


def test_mine_candidates_finds_entity_phrases():
    got = mine_candidates(SENTENCES)
    for term in [
        "hepatosplenomegaly", "viral pneumonia", "pneumonia", "tuberous sclerosis complex",
        "genetic disorder", "benign tumor", "down syndrome", "atrial septal defect", "pleural effusion",
        "chronic kidney disease", "diabetic nephropathy", "iron deficiency anemia",
        "squamous cell carcinoma", "headache", "nausea", "meningitis",
    ]:  # fmt: skip
        assert got[term] == 1, term
    # modifiers and hedges are stripped; words that only look like entities are not heads
    for term in ["severe viral pneumonia", "diagnosis", "prognosis", "possible meningitis", "defect", "disorder"]:
        assert term not in got, term


def test_mine_candidates_counts_repeats():
    got = mine_candidates(["Hepatosplenomegaly.", "HEPATOSPLENOMEGALY and splenomegaly", "", None])
    assert got["hepatosplenomegaly"] == 2 and got["splenomegaly"] == 1


# ---- counting on Ray ------------------------------------------------------------------


def test_count_candidates_ray_equals_counter(ray_local, tmp_path):  # ray_local: tests/conftest.py
    import ray

    texts = SENTENCES * 7 + ["Cardiomegaly with pericardial effusion.", "No pneumothorax."] * 5
    (tmp_path / "a.txt").write_text("\n".join(texts[:20]) + "\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts[20:35])))
    pq.write_table(pa.table({"text": texts[35:]}), tmp_path / "c.parquet")
    paths = [str(tmp_path / n) for n in ("a.txt", "b.jsonl", "c.parquet")]
    expected = dict(mine_candidates(texts))
    assert count_candidates_ray(paths, num_partitions=2) == expected
    ds = ray.data.from_items([{"body": t} for t in texts])
    assert count_candidates_ray(ds, text_column="body", batch_size=8, num_partitions=1) == expected
    with pytest.raises(MedrayError, match="unsupported"):
        count_candidates_ray([str(tmp_path / "x.csv")])


# ---- growing --------------------------------------------------------------------------

COUNTS = {"viral pneumonia": 12, "Hepatosplenomegaly": 3, "pneumonia": 50, "lung infection": 11, "pizza delivery": 20}
# every candidate lands in exactly one of these
BUCKETS = ("below_min_count", "already_in_tree", "fragment", "generic_phrase", "below_threshold", "broader_or_same",
           "no_shared_word", "contradictory_modifier", "sibling_or_broader", "arbiter_rejected", "attached")


def test_grow_tree_attaches_and_keeps_the_skeleton(embedder):
    tree = base_tree()
    new, rep = grow_tree(tree, COUNTS, embedder, min_count=10)
    assert new.table.slice(0, len(tree)).equals(tree.table)
    assert len(new) == len(tree) + 1
    nid = grown_node_id("disease", "viral pneumonia")
    assert nid.startswith("MET:grow:disease:") and len(nid.rsplit(":", 1)[1]) == 12
    node = new.node(nid)
    assert (node.parent_id, node.axis, node.level, node.name, node.sources) == (
        "D:pneu", "disease", 4, "viral pneumonia", ["literature"])  # fmt: skip
    prov = json.loads(node.provenance)
    assert prov["count"] == 12 and prov["parent_score"] > 0.8
    # "Pneumonia" is a lexical hypernym of "viral pneumonia": its words are a proper subset holding the head
    assert (prov["decided_by"], prov["match"], prov["reason"]) == ("lexical", "lexical", "lexical hypernym")
    assert rep["candidates"] == 5 and rep["mentions"] == 96
    assert (rep["below_min_count"], rep["already_in_tree"], rep["below_threshold"], rep["attached"]) == (1, 2, 1, 1)
    assert rep["candidates"] == sum(rep[k] for k in BUCKETS)
    assert rep["examples"]["below_threshold"][0]["term"] == "pizza delivery"
    assert rep["per_axis"] == {"disease": 1, "anatomy": 0, "modality": 0, "symptom": 0}
    # growing again with the grown tree attaches nothing new: the node now names the term
    again, rep2 = grow_tree(new, COUNTS, embedder, min_count=10)
    assert len(again) == len(new) and rep2["already_in_tree"] == 3


def test_min_count_filter(embedder):
    tree = base_tree()
    _, rep = grow_tree(tree, COUNTS, embedder, min_count=13)
    assert rep["below_min_count"] == 3 and rep["attached"] == 0
    _, rep = grow_tree(tree, COUNTS, embedder, min_count=3)
    assert rep["below_min_count"] == 0 and rep["below_threshold"] == 2  # no liver or spleen in the tree
    assert {"hepatosplenomegaly", "pizza delivery"} == {e["term"] for e in rep["examples"]["below_threshold"]}


def test_grow_is_deterministic_across_runs_and_embedders(embedder):
    tree = base_tree()
    a, _ = grow_tree(tree, COUNTS, embedder, min_count=3)
    b, _ = grow_tree(tree, dict(reversed(list(COUNTS.items()))), Embedder(), min_count=3)
    assert a.table.equals(b.table)


def test_a_broader_term_is_not_hung_under_a_narrower_node(embedder):
    tree = base_tree([Node("D:gu", "MET:disease", "disease", 2, "Gastric ulcer, unspecified")])
    new, rep = grow_tree(tree, {"ulcers": 10, "bleeding gastric ulcer": 10}, embedder)
    assert rep["broader_or_same"] == 1 and rep["examples"]["broader_or_same"][0]["term"] == "ulcers"
    assert new.node(grown_node_id("disease", "bleeding gastric ulcer")).parent_id == "D:gu"
    loose, rep = grow_tree(tree, {"ulcers": 10}, embedder, require_narrower=False)
    assert rep["attached"] == 1 and loose.node(grown_node_id("disease", "ulcers")).parent_id == "D:gu"


def test_require_shared_word(embedder):
    tree = base_tree()
    counts = {"viral pneumonia": 10, "pulmonary infection": 10}
    _, loose = grow_tree(tree, counts, embedder)
    strict, rep = grow_tree(tree, counts, embedder, require_shared_word=True)
    assert loose["attached"] == 2  # "pulmonary infection" lands near "Pneumonia" / "lung" on meaning alone
    assert rep["attached"] == 1 and rep["no_shared_word"] == 1
    assert rep["examples"]["no_shared_word"][0]["term"] == "pulmonary infection"
    assert grown_node_id("disease", "viral pneumonia") in strict


@register_arbiter("test-recorder")
class RecordingArbiter:
    calls: list = []

    def decide(self, candidate, options, tree):
        RecordingArbiter.calls.append((candidate, options))
        symptom = [nid for nid, _ in options if tree.node(nid).axis == "symptom"]
        return (symptom[0], "test picks the symptom") if symptom else (None, "no symptom option")


def test_arbiter_decides_near_ties_on_different_branches(embedder):
    extra = [
        Node("D:cyst", "MET:disease", "disease", 2, "Lung cyst"),
        Node("S:cyst", "MET:symptom", "symptom", 2, "Lung cyst"),
    ]
    tree = base_tree(extra)
    assert "test-recorder" in ARBITERS and "rule" in ARBITERS
    RecordingArbiter.calls.clear()
    new, rep = grow_tree(tree, {"congenital lung cyst": 10, "viral pneumonia": 10}, embedder, arbiter="test-recorder")
    assert len(RecordingArbiter.calls) == 1
    cand, options = RecordingArbiter.calls[0]
    assert cand == "congenital lung cyst" and {o[0] for o in options} == {"D:cyst", "S:cyst"}
    node = new.node(grown_node_id("symptom", "congenital lung cyst"))
    assert node.parent_id == "S:cyst" and node.axis == "symptom"
    assert json.loads(node.provenance)["decided_by"] == "test-recorder"
    assert rep["arbitrated"] == 1 and rep["attached"] == 2

    class Rejecting:
        name = "reject"

        def decide(self, candidate, options, tree):
            return None, "undecidable"

    new, rep = grow_tree(tree, {"congenital lung cyst": 10}, embedder, arbiter=Rejecting())
    assert len(new) == len(tree) and rep["arbiter_rejected"] == 1
    assert rep["examples"]["arbiter_rejected"][0]["reason"] == "undecidable"
    with pytest.raises(MedrayError, match="unknown arbiter"):
        resolve_arbiter("no-such-judge")


def test_rule_arbiter_order_of_preferences():
    tree = base_tree([
        Node("D:bact", "D:pneu", "disease", 4, "Bacterial infection of lung"),
        Node("A:seg", "A:lung", "anatomy", 3, "Lung segment"),
    ])  # fmt: skip
    judge = RuleArbiter()
    # head word first: "pneumonia" is in D:pneu's name even though D:bact scores higher and is deeper
    assert judge.decide("viral pneumonia", [("D:bact", 0.71), ("D:pneu", 0.70)], tree)[0] == "D:pneu"
    # then depth: neither shares the head word "opacity"; A:seg (level 3) beats S:cough (level 2)
    chosen, reason = judge.decide("lung opacity", [("S:cough", 0.72), ("A:seg", 0.70)], tree)
    assert chosen == "A:seg" and "deeper" in reason
    # then score
    assert judge.decide("lung opacity", [("A:femur", 0.70), ("S:cough", 0.72)], tree)[0] == "S:cough"


# ---- attachment rules -------------------------------------------------------------------


def test_parse_name_strips_qualifiers_and_finds_head_modifiers_and_alternatives():
    p = parse_name("Malignant (primary) neoplasm, unspecified")
    assert (p.words, p.head, p.modifiers) == (("malignant", "tumor"), "tumor", frozenset({"malignant"}))
    assert "primary" in p.full_words and "unspecified" in p.raw_words and "primary" not in p.words
    p = parse_name("Other venous embolism and thrombosis, not elsewhere classified (NOS)")
    assert p.words == ("venous", "embolism", "thrombosis") and p.groups == (frozenset({"embolism", "thrombosis"}),)
    assert p.modifiers == frozenset({"venous"})
    p = parse_name("Developmental disorder of speech and language")
    assert (p.head, p.modifiers, p.groups) == ("disorder", frozenset({"developmental"}), (frozenset({"speech", "language"}),))
    p = parse_name("Sedative, hypnotic, or anxiolytic related disorders")  # "related" is filler
    assert (p.head, p.groups, p.modifiers) == ("disorder", (frozenset({"sedative", "hypnotic", "anxiolytic"}),), frozenset())
    assert parse_name("Non-ischemic myocardial injury (non-traumatic)").words == ("nonischemic", "myocardial", "injury")
    assert parse_name("Ebstein's anomaly").words == ("ebstein", "anomaly")
    assert parse_name("Polyp of colon").head == "polyp" and parse_name("Injuries, unspecified").words == ("injury",)


def test_lexical_index_finds_proper_subsets_holding_the_head():
    names = ["Glomerulopathy", "Unspecified nephritic syndrome with C3 glomerulonephritis", "Pain",
             "Chest pain", "Embolism and thrombosis of iliac artery", "Acute hepatitis", "Disease of brain"]
    index = LexicalIndex(names, [[], [], ["Ache"], [], [], [], ["Glomerulopathy of brain"]])
    assert index.hypernyms("c3 glomerulopathy") == [(0, 1)]
    assert index.hypernyms("rest pain") == [(2, 1)]  # "Chest pain" has a word "rest pain" lacks
    assert index.hypernyms("acute viral hepatitis") == [(5, 2)]  # words need not be adjacent
    assert index.hypernyms("septic iliac artery embolism") == [(4, 3)]  # one key per alternative
    assert index.hypernyms("pain") == [] and index.hypernyms("acute glomerulopathy of skin") == [(0, 1)]
    assert index.hypernyms("brain disease") == []  # the head must be in the parent: "disease" is, but...
    assert index.hypernyms("chronic brain disease") == [(6, 2)]  # ...a proper subset is needed
    assert index.same("glomerulopathies") == [0] and index.same("iliac artery thrombosis") == [4]
    # synonyms count for "same" (a reason to reject) but never make a parent (ICD inclusion terms lack context)
    assert index.same("ache") == [2] and index.hypernyms("dull ache") == []
    assert index.same("brain glomerulopathy") == [6] and index.hypernyms("c3 brain glomerulopathy") == [(0, 1)]


def test_contradictory_modifiers():
    assert contradiction("benign neoplasm", "Malignant (primary) neoplasm, unspecified") == "benign vs malignant"
    assert contradiction("acute left ventricular failure", "Chronic left ventricular failure") == "acute vs chronic"
    assert contradiction("right lower lobe pneumonia", "Left lower lobe pneumonia") == "right vs left"
    assert contradiction("upper limb fracture", "Fracture of lower limb") == "upper vs lower"
    assert contradiction("acquired cyst", "Congenital cyst") == "acquired vs congenital"
    assert contradiction("non pressure chronic ulcer", "Pressure ulcer") == "nonpressure vs pressure"
    assert contradiction("ischemic cardiomyopathy", "Non-ischemic cardiomyopathy") == "ischemic vs nonischemic"
    assert contradiction("air embolism", "Air embolism (traumatic)") is None
    assert contradiction("nontraumatic air embolism", "Air embolism (traumatic)") == "nontraumatic vs traumatic"
    assert contradiction("acute on chronic heart failure", "Chronic heart failure") is None  # has both
    assert contradiction("viral pneumonia", "Pneumonia") is None


def test_sibling_and_broader_reasons():
    assert sibling_reason("structural anomaly", "Ebstein's anomaly") == "parent has modifier ebstein"
    assert sibling_reason("developmental hypoplasia", "Laryngeal hypoplasia") == "parent has modifier laryngeal"
    assert sibling_reason("developmental defect", "Developmental disorder of speech and language") == "parent covers only language / speech"
    assert sibling_reason("acute embolism", "Acute pain") == "parent head 'pain' differs"
    assert sibling_reason("use disorder", "Factitious disorder imposed on self").startswith("parent has modifier factitious")
    # a category head, a generic modifier or a shared alternative is fine; so is a bare synonym-like head
    assert sibling_reason("skin lesion", "Abnormality of the skin") is None
    assert sibling_reason("cannabis use disorder", "Cannabis related disorders") is None
    assert sibling_reason("anxiolytic use disorder", "Sedative, hypnotic, or anxiolytic related disorders") is None
    assert sibling_reason("cocaine use disorder", "Sedative, hypnotic, or anxiolytic related disorders") == "parent covers only anxiolytic / hypnotic / sedative"
    assert sibling_reason("pulmonary infection", "Pneumonia") is None
    assert sibling_reason("pulmonary infection", "Other, unspecified (NOS)") == "parent has no content words"
    assert not_narrower("ulcers", "Gastric ulcer, unspecified") and not_narrower("primary malignant neoplasm", "Malignant (primary) neoplasm")
    assert not not_narrower("bleeding gastric ulcer", "Gastric ulcer, unspecified")


def test_lexical_hypernym_beats_a_closer_embedding_neighbour(embedder):
    tree = base_tree([
        Node("D:gn", "D:resp", "disease", 3, "Unspecified nephritic syndrome with C3 glomerulonephritis"),
        Node("S:gp", "MET:symptom", "symptom", 2, "Glomerulopathy"),
    ])  # fmt: skip
    vec = embedder.encode(["c3 glomerulopathy", tree.node("D:gn").name, "Glomerulopathy"])
    assert vec[0] @ vec[1] > vec[0] @ vec[2]  # the embedding alone prefers the wrong node
    new, rep = grow_tree(tree, {"c3 glomerulopathy": 32}, embedder)
    node = new.node(grown_node_id("symptom", "c3 glomerulopathy"))
    prov = json.loads(node.provenance)
    assert (node.parent_id, node.level, prov["match"], prov["decided_by"]) == ("S:gp", 3, "lexical", "lexical")
    assert round(prov["parent_score"], 2) == 0.80 and rep["lexical"] == 1 and rep["attached"] == 1
    assert rep["examples"]["lexical"][0] == {"term": "c3 glomerulopathy", "parent": "Glomerulopathy",
                                             "score": prov["parent_score"], "count": 32, "match": "lexical"}  # fmt: skip
    # without the lexical rule the nearest node is rejected as a sibling and "Glomerulopathy" wins on words
    new, rep = grow_tree(tree, {"c3 glomerulopathy": 32}, embedder, lexical=False)
    node = new.node(grown_node_id("symptom", "c3 glomerulopathy"))
    assert node.parent_id == "S:gp" and json.loads(node.provenance)["match"] == "embedding"
    assert rep["options_removed"] == {"sibling_or_broader": 1}
    # and with no such node the candidate is not grown at all
    tree = base_tree([tree.node("D:gn")])
    _, rep = grow_tree(tree, {"c3 glomerulopathy": 32}, embedder)
    assert rep["attached"] == 0 and rep["sibling_or_broader"] == 1
    assert rep["examples"]["sibling_or_broader"][0]["reason"] == "parent has modifier glomerulonephritis, nephritic"


def test_the_most_specific_lexical_parent_wins_and_contradictions_are_dropped(embedder):
    tree = base_tree([
        Node("D:hf", "MET:disease", "disease", 2, "Ventricular failure, unspecified"),
        Node("D:lvf", "D:hf", "disease", 3, "Left ventricular failure"),
        Node("D:clvf", "D:lvf", "disease", 4, "Chronic left ventricular failure"),
    ])  # fmt: skip
    new, rep = grow_tree(tree, {"acute left ventricular failure": 10}, embedder)
    node = new.node(grown_node_id("disease", "acute left ventricular failure"))
    assert node.parent_id == "D:lvf" and json.loads(node.provenance)["match"] == "lexical"
    assert rep["options_removed"]["contradictory_modifier"] == 1  # "Chronic left ventricular failure"
    assert new.table.slice(0, len(tree)).equals(tree.table)  # existing rows never change


def test_contradictory_and_sibling_parents_are_rejected_with_a_bucket(embedder):
    tree = base_tree([
        Node("D:mal", "MET:disease", "disease", 2, "Malignant neoplasm, unspecified"),
        Node("D:lar", "MET:disease", "disease", 2, "Laryngeal hypoplasia"),
    ])  # fmt: skip
    new, rep = grow_tree(tree, {"benign neoplasm": 160, "developmental hypoplasia": 58}, embedder)
    assert len(new) == len(tree) and rep["attached"] == 0
    assert rep["contradictory_modifier"] == 1 and rep["sibling_or_broader"] == 1
    assert rep["examples"]["contradictory_modifier"][0] == {
        "term": "benign neoplasm", "count": 160, "nearest": "Malignant neoplasm, unspecified",
        "score": rep["examples"]["contradictory_modifier"][0]["score"], "reason": "benign vs malignant"}  # fmt: skip
    assert rep["examples"]["sibling_or_broader"][0]["reason"] == "parent has modifier laryngeal"
    assert rep["candidates"] == sum(rep[k] for k in BUCKETS)
    # require_narrower=False turns the word checks off (the old behaviour)
    loose, rep = grow_tree(tree, {"benign neoplasm": 160}, embedder, require_narrower=False)
    assert loose.node(grown_node_id("disease", "benign neoplasm")).parent_id == "D:mal"


def test_a_name_equal_up_to_qualifiers_is_not_grown(embedder):
    tree = base_tree([Node("D:ben", "MET:disease", "disease", 2, "Benign neoplasm, unspecified site")])
    new, rep = grow_tree(tree, {"benign tumour": 46}, embedder)
    assert len(new) == len(tree) and rep["broader_or_same"] == 1
    example = rep["examples"]["broader_or_same"][0]
    assert (example["term"], example["nearest"], example["reason"]) == ("benign tumour", "Benign neoplasm, unspecified site", "same words")


# ---- pruning mined candidates -----------------------------------------------------------


def test_fragment_shares_and_generic_phrases():
    counts = {"use disorder": 20, "alcohol use disorder": 50, "substance use disorder": 30,
              "heart disease": 10, "congenital heart disease": 5, "pneumonia": 40, "viral pneumonia": 60}  # fmt: skip
    shares = fragment_shares(counts, counts)
    assert shares["use disorder"] == 0.8 and round(shares["heart disease"], 3) == 0.333
    assert shares["alcohol use disorder"] == 0.0 and "pneumonia" not in shares  # single words are left alone
    for term in ("structural anomaly", "developmental defect", "congenital structural anomaly", "increased opacity"):
        assert is_generic_phrase(term), term
    for term in ("developmental hypoplasia", "renal anomaly", "anomaly", "benign neoplasm", "structural anomalies of heart"):
        assert not is_generic_phrase(term), term
    got = mine_candidates(["current injury - see injury of knee", "The word mass is used early.", "Specified diabetes"])
    assert not {"see injury", "current injury", "word mass", "specified diabetes"} & set(got)


def test_grow_tree_drops_fragments_and_generic_phrases(embedder):
    tree = base_tree([Node("D:alc", "MET:disease", "disease", 2, "Alcohol related disorders"),
                      Node("D:ebs", "MET:disease", "disease", 2, "Ebstein's anomaly")])  # fmt: skip
    counts = {"use disorder": 20, "alcohol use disorder": 21, "substance use disorder": 34, "tobacco use disorder": 27,
              "cocaine use disorder": 18, "structural anomaly": 162}  # fmt: skip
    new, rep = grow_tree(tree, counts, embedder)
    assert rep["fragment"] == 1 and rep["examples"]["fragment"][0] == {"term": "use disorder", "count": 20, "share": 0.833}
    assert rep["generic_phrase"] == 1 and rep["examples"]["generic_phrase"][0] == {"term": "structural anomaly", "count": 162}
    assert new.node(grown_node_id("disease", "alcohol use disorder")).parent_id == "D:alc"
    assert rep["candidates"] == sum(rep[k] for k in BUCKETS) and rep["settings"]["fragment_share"] == 0.75
    _, rep = grow_tree(tree, counts, embedder, fragment_share=0.9)
    assert rep["fragment"] == 0
    # with the pruning off, "structural anomaly" still does not land under "Ebstein's anomaly"
    _, rep = grow_tree(tree, counts, embedder, fragment_share=None, drop_generic=False)
    assert rep["fragment"] == rep["generic_phrase"] == 0
    assert all(e["parent"] != "Ebstein's anomaly" for e in rep["examples"]["attached"])


# ---- literature -----------------------------------------------------------------------


def test_literature_corpus_from_hpo_definitions():
    texts = list(literature_corpus(icd=False))
    assert len(texts) > 10_000
    assert len(set(texts)) == len(texts)
    assert any("kidney" in t for t in texts[:2000])
    assert not any(t.startswith("def:") or t.endswith('"') for t in texts[:2000])
    counts = mine_candidates(texts)
    assert counts["hepatosplenomegaly"] >= 1 and counts["seizure"] > 100


def test_literature_corpus_icd_notes_follow_the_tree():
    texts = list(literature_corpus(tree=base_tree(), icd=True))
    icd_only = texts[len(list(literature_corpus(icd=False))):]
    assert icd_only and any("pneumonia" in t.lower() for t in icd_only)
    assert len(icd_only) < 200  # only the tree's ICD-10-CM codes (J18, S72) contribute
