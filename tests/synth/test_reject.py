"""Multi-expert reject sampling on hand-written proposals for one real six-hop item."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medray.errors import ConfigError
from medray.met.build import build_tree
from medray.met.tree import Tree
from medray.synth.graph import build_graph
from medray.synth.kgqa import (
    ITEM_SCHEMA,
    KGQAConfig,
    generate_kgqa,
    kgqa_prompts,
    make_item,
    reference_cot,
    steps_along,
)
from medray.synth.reject import (
    RejectConfig,
    check_proposals,
    check_proposals_dataset,
    expert_requests,
    kept_to_sft,
    reject_sample,
    select_kept,
)
from medray.train.cot import StructuredCoT, cot_sample_to_chat, is_reasoning

PATH = ["MEDRAY:finding/pleural_effusion", "MEDRAY:anatomy/pleura", "MEDRAY:finding/pneumothorax",
        "MEDRAY:finding/chest_radiograph", "MEDRAY:finding/cardiomegaly", "SCT:80891009", "DCM:CR"]
CHAIN = ["Pleural effusion is located in the pleura.", "The pleura is the site of pneumothorax.",
         "Pneumothorax is a kind of chest radiograph finding.", "Chest radiograph finding has the subtype cardiomegaly.",
         "Cardiomegaly is located in the heart.", "The heart is imaged by computed radiography."]


@pytest.fixture(scope="module")
def tree() -> Tree:
    return build_tree([("radiology_lexicon", {}), ("dicom", {})])[0]


@pytest.fixture(scope="module")
def graph(tree):
    return build_graph(tree)[0]


@pytest.fixture(scope="module")
def item(graph) -> dict:
    """Pleural effusion ... [E] (Heart) ... [F]: What is [E]? Heart has the synonym "cardiac silhouette"."""
    return make_item(graph, PATH[0], steps_along(graph, PATH), 5, seed=0)


def answer_text(reasoning: list[str] | str, answer: str | None = "Heart") -> str:
    body = reasoning if isinstance(reasoning, str) else " ".join(reasoning)
    cot = StructuredCoT("The question hides six entities and asks for [E].", "Chest findings sit in chest anatomy.",
                        body, "[E] is the organ asked for.", visual=False, answer=answer)
    return cot.render()


CASES = {  # name -> (generated text, outcome passes, reasoning passes, first reject reason)
    "correct": (answer_text(CHAIN), True, True, None),
    "synonym_answer": (answer_text(CHAIN, "[E] is the Cardiac Silhouette."), True, True, None),
    "masked_answer": (answer_text(CHAIN, "heart ([E])"), True, True, None),
    "wrong_answer": (answer_text(CHAIN, "Lung"), False, True, "wrong_answer"),
    "out_of_order": (answer_text(list(reversed(CHAIN))), True, False, "out_of_order"),
    "missing_entity": (answer_text([CHAIN[0], "The pleura is the site of pneumothorax, which is a common finding.",
                                    "Cardiomegaly is located in the heart.", CHAIN[5]]), True, False, "missing_entity"),
    "negated_entity": (answer_text([*CHAIN[:4], "There is no cardiomegaly in the heart.", CHAIN[5]]), True, False,
                       "negated_entity"),
    "negated_relation": (answer_text([*CHAIN[:2], "Pneumothorax is not a kind of chest radiograph finding.", *CHAIN[3:]]),
                         True, False, "contradicted_relation"),
    "different_relation": (answer_text([*CHAIN[:2], "Pneumothorax is located in the chest radiograph finding.", *CHAIN[3:]]),
                           True, False, "contradicted_relation"),
    "unparseable": ("I think it is the heart.", False, False, "unparseable"),
    "answer_without_sections": ("The heart, surely.\nAnswer: heart", True, False, "unparseable"),
    "empty": ("", False, False, "unparseable"),
}


def proposals_for(item: dict, cases: dict) -> pa.Table:
    rows = [{**item, "expert": name, "seed": i, "generated_text": text} for i, (name, (text, *_)) in enumerate(cases.items())]
    schema = ITEM_SCHEMA.append(pa.field("expert", pa.string())).append(pa.field("generated_text", pa.string()))
    return pa.Table.from_pylist(rows, schema=schema)


def test_each_hand_written_case_gets_its_verdict(item, tree):
    checked = check_proposals(proposals_for(item, CASES), tree).to_pylist()
    for row, (name, (_, outcome, reasoning, reason)) in zip(checked, CASES.items()):
        assert (row["outcome_ok"], row["reasoning_ok"]) == (outcome, reasoning), (name, row["reasons"], row["detail"])
        assert (row["reasons"][0] if row["reasons"] else None) == reason, (name, row["reasons"], row["detail"])
    by_name = {r["expert"]: r for r in checked}
    assert "position 3: Chest radiograph finding" in by_name["missing_entity"]["detail"]
    assert "got 'Lung', want 'Heart'" in by_name["wrong_answer"]["detail"]
    assert by_name["wrong_answer"]["given_answer"] == "Lung"
    assert "states located_in" in by_name["different_relation"]["detail"]


def test_the_reference_chain_of_thought_passes_both_checks(graph, tree):
    items, _ = generate_kgqa(graph, tree.children("MEDRAY:finding/chest_radiograph"), KGQAConfig(paths_per_start=2, answer="random"))
    rows = [{**r, "generated_text": reference_cot(r).render()} for r in items.to_pylist()]
    checked = check_proposals(pa.Table.from_pylist(rows), tree)
    assert all(checked.column("outcome_ok").to_pylist()) and all(checked.column("reasoning_ok").to_pylist()), \
        [d for d in checked.column("detail").to_pylist() if d]


def test_one_kept_per_item_by_expert_order_and_counts_reconcile(item, graph, tree):
    other = make_item(graph, PATH[0], steps_along(graph, PATH), 6, seed=0)  # same path, asks for [F]
    good, wrong = answer_text(CHAIN), answer_text(CHAIN, "Lung")
    rows = [{**item, "seed": 0, "generated_text": wrong}, {**item, "seed": 1, "generated_text": good},
            {**item, "seed": 2, "generated_text": good}, {**other, "seed": 0, "generated_text": good},
            {**other, "seed": 1, "generated_text": "nonsense"}]
    table = pa.Table.from_pylist(rows)
    result = reject_sample(table, tree)
    r = result.report
    assert r["proposals"] == 5 == r["kept"] + r["filtered"] + r["rejected"]
    assert (r["kept"], r["filtered"], r["rejected"]) == (1, 1, 3)
    assert result.kept.column("seed").to_pylist() == [1] and result.kept.column("expert").to_pylist() == ["seed=1"]
    assert result.filtered.column("seed").to_pylist() == [2]
    assert r["items"] == 2 and r["items_without_pass"] == [other["item_id"]]
    # the other item asks for [F] (Computed Radiography): the good text answers Heart, the wrong answer there
    assert r["pass_rates"] == {"proposals": 5, "outcome": 2 / 5, "reasoning": 4 / 5, "both": 2 / 5}
    assert r["per_expert"]["seed=0"] == {"proposals": 2, "outcome": 0.0, "reasoning": 1.0, "both": 0.0}
    assert r["reject_reasons"] == {"unparseable": 1, "wrong_answer": 2}
    assert sorted(result.rejects.column("reason").to_pylist()) == ["unparseable", "wrong_answer", "wrong_answer"]
    # the pick depends on the expert order, never on row order
    shuffled = reject_sample(table.take(pa.array([4, 2, 3, 1, 0])), tree)
    assert shuffled.kept.column("seed").to_pylist() == [1]
    ranked = select_kept(check_proposals(table, tree), RejectConfig(expert_order=["seed=2"]))
    assert ranked.kept.column("seed").to_pylist() == [2] and ranked.report["kept_by_expert"] == {"seed=2": 1}


def test_expert_requests_feed_one_engine_several_seeds(item):
    items = kgqa_prompts(pa.Table.from_pylist([item], schema=ITEM_SCHEMA))
    requests = expert_requests(items, [11, 12, 13])
    assert requests.num_rows == 3 and requests.column("seed").type == pa.int64()
    assert requests.column("seed").to_pylist() == [11, 12, 13]
    assert requests.column("expert").to_pylist() == ["seed=11", "seed=12", "seed=13"]
    assert set(requests.column("prompt").to_pylist()) == {items.column("prompt")[0].as_py()}
    named = expert_requests(requests, [0, 1], "llama")  # a second engine: its experts carry its name
    assert named.column("expert").to_pylist() == ["llama/seed=0"] * 3 + ["llama/seed=1"] * 3


def test_kept_items_become_sft_rows(item, tree):
    result = reject_sample(pa.Table.from_pylist([{**item, "seed": 0, "generated_text": answer_text(CHAIN)}]), tree)
    (row,) = kept_to_sft(result.kept)
    assert row["question"] == item["question"] and row["answer"] == "Heart"
    chat = cot_sample_to_chat(row)
    assert is_reasoning(chat) and chat["messages"][-1]["content"].rstrip().endswith("Answer: Heart")


def test_config_errors_name_the_key(item, tree):
    with pytest.raises(ConfigError, match="reject.sections"):
        check_proposals(pa.Table.from_pylist([{**item, "generated_text": ""}]), tree, RejectConfig(sections=["evidence"]))
    with pytest.raises(ConfigError, match="proposals"):
        check_proposals(pa.table({"item_id": ["x"]}), tree)


@pytest.mark.slow
def test_ray_dataset_checks_match_the_plain_function(item, tree, ray_local):
    import ray

    table = proposals_for(item, CASES)
    checked = check_proposals_dataset(ray.data.from_arrow(table), tree, batch_size=4)
    rows = sorted(checked.take_all(), key=lambda r: r["seed"])
    plain = check_proposals(table, tree).to_pylist()
    assert [(r["outcome_ok"], r["reasoning_ok"], list(r["reasons"])) for r in rows] == \
           [(r["outcome_ok"], r["reasoning_ok"], r["reasons"]) for r in plain]
