"""Triplet mining on hand-worked mini-batches, its rejects, determinism, and Ray Data parity."""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow as pa
import pytest

from medray import storage
from medray.errors import ConfigError, MedrayError
from medray.medtrim.mine import TRIPLET_SCHEMA, assign_batches, mine_dataset, mine_pool, run_mining
from medray.medtrim.score import NO_FINDING
from medray.medtrim.settings import MiningConfig

PE = "pleural_effusion"


def ent(**classes) -> dict:
    """ent(pleural_effusion=("small", "left"), cardiomegaly=()) -> meta-entities."""
    out = {}
    for name, facts in classes.items():
        adj, side = (facts + (None, None))[:2]
        out[name] = {"adjectives": [adj] if adj else [], "directions": [side] if side else []}
    return out


def records(pool: dict) -> list[dict]:
    return [{"id": rid, "entities": e} for rid, e in pool.items()]


def by_anchor(result) -> dict:
    return {r["anchor_id"]: r for r in result.triplets.to_pylist()}


def earliest(ids: list[str], among: set[str], seed: int = 0) -> str:
    """The record the shuffle put first among `among` (the tie-break)."""
    table = assign_batches(ids, len(ids), seed)
    order = dict(zip(table.column("id").to_pylist(), table.column("position").to_pylist()))
    return min(among, key=order.__getitem__)


# Default weights 0.85 / 0.10 / 0.05, tau in [0.25, 0.6). Pairwise S, worked by hand:
#   A-B 1      (identical)
#   A-C 0.85   (same class; adjectives and sides differ: 0.85*1)
#   A-D 0.5    (classes {pe} vs {pe, cm}: 0.85*1/2 + 0.10*1/2 + 0.05*1/2)
#   C-D 0.425  (Jaccard 1/2, pe descriptors differ: 0.85*1/2)
#   D-E 0.5    (Jaccard 1/2; cm unqualified on both sides: IoU 1 -> 0.425 + 0.05 + 0.025)
#   every other pair 0 (no shared class); B scores as A.
SIX = {
    "A": ent(pleural_effusion=("small", "left")),
    "B": ent(pleural_effusion=("small", "left")),
    "C": ent(pleural_effusion=("large", "right")),
    "D": ent(pleural_effusion=("small", "left"), cardiomegaly=()),
    "E": ent(cardiomegaly=()),
    "F": {NO_FINDING: {"adjectives": [], "directions": []}},
}


def test_hand_worked_batch_of_six():
    result = mine_pool(records(SIX), MiningConfig(batch_size=6, seed=3))
    got = by_anchor(result)
    ids = list(SIX)
    # A: positive B (1.0); C (0.85) is not below tau_max; D (0.5) is the one semi-hard candidate
    assert (got["A"]["positive_id"], got["A"]["s_pos"], got["A"]["negative_id"], got["A"]["s_neg"]) == ("B", 1.0, "D", 0.5)
    assert (got["B"]["positive_id"], got["B"]["negative_id"]) == ("A", "D")
    # C: A and B tie at 0.85 -> the earlier in the shuffle; negative D (0.425, semi-hard)
    assert got["C"]["positive_id"] == earliest(ids, {"A", "B"}, seed=3)
    assert (got["C"]["s_pos"], got["C"]["negative_id"], got["C"]["s_neg"]) == (0.85, "D", 0.425)
    # D: A, B and E tie at 0.5 -> the earliest; the other two are in [0.25, 0.6) but as similar as the
    # positive, so the negative is C (0.425)
    assert got["D"]["positive_id"] == earliest(ids, {"A", "B", "E"}, seed=3)
    assert (got["D"]["s_pos"], got["D"]["negative_id"], got["D"]["s_neg"]) == (0.5, "C", 0.425)
    # E: positive D (0.5); every other record scores 0 < tau_min -> fallback, the earliest of the ties
    assert (got["E"]["positive_id"], got["E"]["s_neg"], got["E"]["negative_fallback"]) == ("D", 0.0, True)
    assert got["E"]["negative_id"] == earliest(ids, {"A", "B", "C", "F"}, seed=3)
    assert not any(got[a]["negative_fallback"] for a in "ABCD")
    # F (no finding) scores 0 with everyone: the positive is 0 and nothing scores below it
    assert "F" not in got
    assert result.rejects.to_pylist() == [{"id": "F", "reason": "no_negative", "detail": result.rejects["detail"][0].as_py()}]
    assert "tau_max=0.6" in result.rejects["detail"][0].as_py()
    assert result.counts == {"in": 6, "anchors": 6, "mini_batches": 1, "triplets": 5, "negative_fallback": 1,
                             "rejected": {"no_negative": 1}}
    assert set(result.triplets.column("batch").to_pylist()) == {0}


# X has four classes. Pairwise S with X:
#   P 1      (identical)
#   Q 0.75   (3 of 4 classes, all matching: 0.75 * (0.85 + 0.10 + 0.05)) -> not below tau_max
#   R 0.2    (classes {cm, lesion} vs X's four: union 5, shared cm unqualified -> 1/5 of everything)
#   T 0      (lung_lesion only)
#   V 0.5    ({pe small left, cm}: Jaccard 2/4, both shared classes match -> 0.5)
#   W 0.4625 ({pe large right, cm}: Jaccard 2/4; pe descriptors differ, cm matches:
#             0.85*0.5 + 0.10*0.25 + 0.05*0.25)
X = ent(pleural_effusion=("small", "left"), cardiomegaly=(), atelectasis=(), edema=())
P = X
Q = ent(pleural_effusion=("small", "left"), cardiomegaly=(), atelectasis=())
R = ent(cardiomegaly=(), lung_lesion=())
T = ent(lung_lesion=())
V = ent(pleural_effusion=("small", "left"), cardiomegaly=())
W = ent(pleural_effusion=("large", "right"), cardiomegaly=())


def test_fallback_takes_the_highest_below_tau_max_and_flags_it():
    result = mine_pool(records({"X": X, "P": P, "Q": Q, "R": R, "T": T}), MiningConfig(batch_size=5))
    x = by_anchor(result)["X"]
    # nothing in [0.25, 0.6); below tau_max are R (0.2) and T (0): the highest is R
    assert (x["positive_id"], x["s_pos"], x["negative_id"], x["s_neg"], x["negative_fallback"]) == ("P", 1.0, "R", 0.2, True)


@pytest.mark.parametrize("pick, negative, s_neg", [("lowest", "W", 0.4625), ("highest", "V", 0.5)])
def test_which_semi_hard_negative(pick, negative, s_neg):
    pool = {"X": X, "P": P, "V": V, "W": W, "T": T}
    x = by_anchor(mine_pool(records(pool), MiningConfig(batch_size=5, semi_hard_pick=pick)))["X"]
    # V (0.5) and W (0.4625) are both semi-hard; the reference takes the lowest
    assert (x["positive_id"], x["negative_id"], x["s_neg"], x["negative_fallback"]) == ("P", negative, s_neg, False)


def test_bad_records_become_rejects_and_the_rest_is_mined():
    pool = records(SIX) + [{"id": "nul", "entities": None}, {"id": "junk", "entities": "{oops"},
                           {"id": "shape", "entities": '{"edema": {"adjectives": "mild"}}'},
                           {"id": None, "entities": '{"edema": {}}'},
                           {"id": "twin", "entities": '{"edema": {}}'}, {"id": "twin", "entities": '{"edema": {}}'}]
    result = mine_pool(pool, MiningConfig(batch_size=6, seed=3))
    reasons = {(r["id"], r["reason"]) for r in result.rejects.to_pylist()}
    assert reasons == {("nul", "bad_entities"), ("junk", "bad_entities"), ("shape", "bad_entities"),
                       ("", "missing_id"), ("twin", "duplicate_id"), ("F", "no_negative")}
    assert Counter(result.rejects.column("reason").to_pylist())["duplicate_id"] == 2
    assert result.triplets.num_rows == 5 and result.counts["in"] == 12
    details = {r["id"]: r["detail"] for r in result.rejects.to_pylist()}
    assert details["nul"] == "entities is null" and "not JSON" in details["junk"]
    assert "edema.adjectives" in details["shape"]


def test_pool_smaller_than_the_batch_rejects_every_record():
    result = mine_pool(records(SIX), MiningConfig(batch_size=8))
    assert result.triplets.num_rows == 0 and result.triplets.schema == TRIPLET_SCHEMA
    assert sorted(result.rejects.column("id").to_pylist()) == sorted(SIX)
    assert set(result.rejects.column("reason").to_pylist()) == {"pool_too_small"}
    assert "6 valid records" in result.rejects["detail"][0].as_py() and "batch_size=8" in result.counts["error"]


def test_batches_are_balanced_and_independent_of_input_order():
    ids = [f"r{i}" for i in range(10)]
    table = assign_batches(ids, 4, seed=1)
    # ceil(10 / 4) = 3 batches of 4, 3, 3 records; positions are a permutation
    assert sorted(Counter(table.column("batch").to_pylist()).values()) == [3, 3, 4]
    assert sorted(table.column("position").to_pylist()) == list(range(10))
    assert assign_batches(list(reversed(ids)), 4, seed=1).equals(table)
    assert not assign_batches(ids, 4, seed=2).equals(table)


def random_pool(n: int, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    classes = ["pleural_effusion", "cardiomegaly", "consolidation", "pneumothorax", "atelectasis", "edema"]
    out = []
    for i in range(n):
        chosen = rng.sample(classes, rng.randint(0, 3))
        out.append({"id": f"s{i:04d}", "entities": {c: {"adjectives": [rng.choice(["mild", "moderate", "severe"])],
                                                        "directions": [rng.choice(["left", "right", "bilateral"])]}
                                                    for c in chosen}})
    return out


def test_mining_is_deterministic_for_a_seed():
    pool = random_pool(120)
    first = mine_pool(pool, MiningConfig(batch_size=16, seed=5))
    again = mine_pool(list(reversed(pool)), MiningConfig(batch_size=16, seed=5))
    other = mine_pool(pool, MiningConfig(batch_size=16, seed=6))
    assert first.triplets.equals(again.triplets) and first.rejects.equals(again.rejects)
    assert not first.triplets.equals(other.triplets)
    # 120 records in ceil(120/16) = 8 batches of 15; every anchor has a triplet or a reject
    batches = assign_batches([r["id"] for r in pool], 16, seed=5).column("batch").to_pylist()
    assert sorted(Counter(batches).values()) == [15] * 8 and first.counts["mini_batches"] == 8
    assert first.triplets.num_rows + first.counts["rejected"].get("no_negative", 0) == 120
    s_pos, s_neg = first.triplets.column("s_pos").to_pylist(), first.triplets.column("s_neg").to_pylist()
    assert all(n < p and n < 0.6 for p, n in zip(s_pos, s_neg))


@pytest.mark.parametrize("kwargs, key", [
    ({"batch_size": 2}, "mining.batch_size"), ({"tau_min": 0.6, "tau_max": 0.6}, "mining.tau_min"),
    ({"tau_max": 1.5}, "mining.tau_max"), ({"semi_hard_pick": "random"}, "mining.semi_hard_pick"),
])
def test_mining_config_names_the_bad_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        mine_pool(records(SIX), MiningConfig(**kwargs))


def test_ray_data_gives_the_same_triplets_and_writes_the_tables(ray_local, tmp_path):
    import ray

    pool = random_pool(300) + [{"id": "bad", "entities": "not json"}]
    cfg = MiningConfig(batch_size=32, seed=9)
    local = mine_pool(pool, cfg)
    table = pa.table({"id": [r["id"] for r in pool],
                      "entities": [e if isinstance(e := r["entities"], str) else json.dumps(e) for r in pool]})
    # 5 blocks and 3 partitions here, one block from one file in run_mining below, none in-process
    distributed = mine_dataset(ray.data.from_arrow(table).repartition(5), cfg, num_partitions=3)
    assert distributed.triplets.equals(local.triplets)
    assert distributed.rejects.equals(local.rejects)
    assert distributed.counts == local.counts
    assert local.counts["mini_batches"] == 10 and local.triplets.num_rows > 250

    storage.write_parquet(table, str(tmp_path / "pool" / "part-0.parquet"))
    summary = run_mining(str(tmp_path / "pool"), str(tmp_path / "out"), cfg)
    assert storage.read_parquet(str(tmp_path / "out" / "triplets.parquet")).equals(local.triplets)
    assert storage.read_parquet(str(tmp_path / "out" / "rejects.parquet")).column("id").to_pylist()[0] == "bad"
    assert summary["counts"] == local.counts and summary["mining"]["seed"] == 9

    small = tmp_path / "small"
    storage.write_parquet(table.slice(0, 10), str(small / "part-0.parquet"))
    with pytest.raises(MedrayError, match=r"pool of 10 valid records is smaller than mining.batch_size=32"):
        run_mining(str(small), str(tmp_path / "small-out"), cfg)
    rejects = storage.read_parquet(str(tmp_path / "small-out" / "rejects.parquet"))
    assert rejects.num_rows == 10 and set(rejects.column("reason").to_pylist()) == {"pool_too_small"}
