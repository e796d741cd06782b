"""The matcher in a Ray Data actor pool: the same counts as matching locally."""

from __future__ import annotations

import pickle
from collections import Counter

import pyarrow as pa

from medray.met.ray_match import count_mentions_ray, present_counts

TEXTS = [
    "No pneumothorax. Small left pleural effusion.",
    "Cardiomegaly without pulmonary edema; possible pneumonia.",
    None,
    "Pleural effusion has resolved. No pleural effusion. Pleural effusion is present.",
] * 50


def test_actor_pool_counts_equal_local_counts(ray_local, tiny_matcher):
    import ray.data

    ds = ray.data.from_arrow(pa.table({"text": pa.array(TEXTS, pa.string())}))
    counts = count_mentions_ray(ds, tiny_matcher, actors=1, batch_size=64)
    got = {(n, a): c for n, a, c in zip(counts["node_id"].to_pylist(), counts["assertion"].to_pylist(),
                                         counts["count"].to_pylist())}
    local = tiny_matcher.match_batch(TEXTS).to_pylist()
    expected = Counter((h["node_id"], h["assertion"]) for h in local)
    assert got == dict(expected)
    # 50 copies: "No pneumothorax", "has resolved" / "No pleural effusion" (absent) and two present effusions
    assert got == {("T:ptx", "absent"): 50, ("T:pe", "present"): 100, ("T:pe", "absent"): 100, ("T:cm", "present"): 50}
    assert present_counts(counts) == {"T:pe": 100, "T:cm": 50}


def test_matcher_ships_as_term_lists_not_its_tables(tiny_matcher):
    blob = pickle.dumps(tiny_matcher)
    assert b"PhraseTrie" not in blob and b"HashTable" not in blob  # rebuilt on load from the term lists
    clone = pickle.loads(blob)
    assert clone.match("No pneumothorax.") == tiny_matcher.match("No pneumothorax.")
