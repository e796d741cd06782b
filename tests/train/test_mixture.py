"""Mixture plans: exact per-step counts, realised shares on target, a monotone schedule, deterministic resume."""

from __future__ import annotations

import numpy as np
import pytest

from medray.config import load_config
from medray.errors import ConfigError, MedrayError
from medray.train.mixture import (
    MixtureConfig,
    MixturePlan,
    MixtureSource,
    ShareSchedule,
    interleave,
)

STEPS, BATCH = 400, 32


def sft_mixture(kind: str = "linear", seed: int = 0) -> MixtureConfig:
    """Medical SFT takes what is left after general replay (fixed 15%) and reasoning (10% -> 50%)."""
    return MixtureConfig(
        sources=[MixtureSource("medical"), MixtureSource("general", share=0.15), MixtureSource("reasoning")],
        schedule=ShareSchedule(source="reasoning", kind=kind, start_share=0.1, end_share=0.5, start_step=50,
                               end_step=350, levels=5),
        seed=seed,
    )


def test_constant_shares_give_exact_counts_every_step():
    config = MixtureConfig(sources=[MixtureSource("medical", weight=5), MixtureSource("general", weight=3),
                                    MixtureSource("reasoning", weight=2)])
    counts = MixturePlan(config, 10).count_matrix(100)
    assert (counts == np.array([5, 3, 2])).all()


def test_cpt_weights_split_rows_between_medical_and_replay_shards():
    config = MixtureConfig(sources=[MixtureSource("medical", path="s3://b/med", weight=3.0),
                                    MixtureSource("replay", path="s3://b/web", weight=1.0)])
    plan = MixturePlan(config, 10)
    counts = plan.count_matrix(20)
    assert counts.sum(axis=1).tolist() == [10] * 20
    assert counts.sum(axis=0).tolist() == [150, 50]  # 7.5 and 2.5 per step, alternating 8/2 and 7/3
    assert sorted({tuple(row) for row in counts.tolist()}) == [(7, 3), (8, 2)]


@pytest.mark.parametrize("kind", ["linear", "step"])
def test_realised_counts_stay_within_one_sample_of_target_at_every_step(kind):
    config = sft_mixture(kind)
    plan = MixturePlan(config, BATCH)
    counts = plan.count_matrix(STEPS)
    assert counts.sum(axis=1).tolist() == [BATCH] * STEPS and counts.min() >= 0
    target = np.cumsum(config.target_shares(np.arange(STEPS)) * BATCH, axis=0)
    lag = np.abs(np.cumsum(counts, axis=0) - target)
    assert lag.max() < 1.0
    realised = plan.realised_shares(STEPS)
    wanted = config.target_shares(np.arange(STEPS)).mean(axis=0)
    for name, share in zip(config.names, wanted):
        assert abs(realised[name] - share) < 1 / (STEPS * BATCH)
    assert realised["general"] == pytest.approx(0.15, abs=1 / (STEPS * BATCH))
    totals = plan.target_totals(STEPS)
    assert sum(totals.values()) == pytest.approx(STEPS * BATCH)
    assert all(abs(plan.consumed(STEPS)[n] - totals[n]) < 1 for n in config.names)


def test_linear_schedule_rises_monotonically_from_start_to_end_share():
    config = sft_mixture("linear")
    shares = config.schedule.share(np.arange(STEPS))
    assert shares[0] == shares[50] == pytest.approx(0.1)
    assert shares[200] == pytest.approx(0.3)
    assert shares[350] == shares[-1] == pytest.approx(0.5)
    assert (np.diff(shares) >= 0).all()
    reasoning = MixturePlan(config, BATCH).count_matrix(STEPS)[:, 2]
    # 3.2 per step before the ramp, 16 after it; any window is within 2 samples of its target (lag < 1 at each end).
    assert abs(int(reasoning[:50].sum()) - 160) < 2 and abs(int(reasoning[350:].sum()) - 800) < 2
    assert set(reasoning[:50].tolist()) <= {3, 4}
    per_window = reasoning.reshape(-1, 25).sum(axis=1)
    assert (np.diff(per_window) >= 0).all() and per_window[0] < per_window[-1]


def test_step_schedule_has_equal_stairs():
    shares = sft_mixture("step").schedule.share(np.arange(STEPS))
    assert sorted(set(np.round(shares, 6).tolist())) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert (np.diff(shares) >= 0).all()
    assert shares[124] == pytest.approx(0.1) and shares[125] == pytest.approx(0.2)  # stairs of 300 / 4 steps
    assert shares[349] == pytest.approx(0.4) and shares[350] == pytest.approx(0.5)


def test_plans_are_deterministic_and_the_seed_only_orders_within_a_step():
    a, b = MixturePlan(sft_mixture(seed=1), BATCH), MixturePlan(sft_mixture(seed=1), BATCH)
    other = MixturePlan(sft_mixture(seed=2), BATCH)
    assert np.array_equal(a.count_matrix(STEPS), b.count_matrix(STEPS))
    assert np.array_equal(a.count_matrix(STEPS), other.count_matrix(STEPS))
    assert [a.slots(s) for s in range(20)] == [b.slots(s) for s in range(20)]
    assert [a.slots(s) for s in range(20)] != [other.slots(s) for s in range(20)]
    for step in (0, 7, 399):
        slots = a.slots(step)
        assert {n: slots.count(n) for n in a.names} == a.counts(step)
    # Asking for a late step first gives the same counts as walking there.
    fresh = MixturePlan(sft_mixture(seed=1), BATCH)
    assert fresh.counts(300) == a.counts(300) and fresh.consumed(300) == a.consumed(300)
    with pytest.raises(MedrayError, match="step must be"):
        fresh.counts(-1)


@pytest.mark.parametrize("seed", range(6))
def test_random_mixtures_always_fill_the_batch_and_keep_the_lag_small(seed):
    rng = np.random.default_rng(seed)
    batch = int(rng.integers(1, 9))
    start, end = rng.uniform(0, 0.5, 2)
    config = MixtureConfig(
        sources=[MixtureSource("a", weight=float(rng.uniform(0.1, 3))), MixtureSource("b", share=float(rng.uniform(0, 0.3))),
                 MixtureSource("c", weight=float(rng.uniform(0.1, 3))), MixtureSource("r")],
        schedule=ShareSchedule(source="r", kind=["linear", "step"][seed % 2], start_share=float(start),
                               end_share=float(end), start_step=5, end_step=60, levels=3))
    counts = MixturePlan(config, batch).count_matrix(120)
    assert counts.min() >= 0 and counts.sum(axis=1).tolist() == [batch] * 120
    lag = np.abs(np.cumsum(counts, axis=0) - np.cumsum(config.target_shares(np.arange(120)) * batch, axis=0))
    assert lag.max() < len(config.sources) - 1  # shares below 1/batch_size may lag more than one sample, never far


def test_interleave_draws_per_plan_cycles_epochs_and_resumes_where_it_left_off():
    config = MixtureConfig(sources=[MixtureSource("medical", weight=3), MixtureSource("general", weight=1)], seed=4)
    plan = MixturePlan(config, 8)
    epochs: dict[str, list[int]] = {"medical": [], "general": []}

    def source(name: str, size: int):
        def items(epoch: int):
            epochs[name].append(epoch)
            return [(name, epoch, i) for i in range(size)]
        return items

    sources = {"medical": source("medical", 50), "general": source("general", 7)}
    batches = list(interleave(plan, sources, steps=10))
    assert [[item[0] for item in batch] for batch in batches] == [plan.slots(s) for s in range(10)]
    general = [item for batch in batches for item in batch if item[0] == "general"]
    assert general[:9] == [("general", 0, i) for i in range(7)] + [("general", 1, 0), ("general", 1, 1)]
    assert epochs["general"][:3] == [0, 1, 2]
    resumed = list(interleave(plan, sources, start_step=6, steps=4))
    assert resumed == batches[6:]
    with pytest.raises(MedrayError, match="missing"):
        next(interleave(plan, {"medical": sources["medical"]}))
    with pytest.raises(MedrayError, match="not in the mixture"):
        next(interleave(plan, {**sources, "web": sources["general"]}))
    with pytest.raises(MedrayError, match="no items"):
        next(interleave(plan, {"medical": lambda e: [], "general": sources["general"]}))


@pytest.mark.parametrize(("config", "key"), [
    (MixtureConfig(), "mixture.sources"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("b", weight=0)]), "mixture.sources.1.weight"),
    (MixtureConfig(sources=[MixtureSource("a", weight=-1.0)]), "mixture.sources.0.weight"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("a")]), "mixture.sources.1.name"),
    (MixtureConfig(sources=[MixtureSource("")]), "mixture.sources.0.name"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("b", share=1.5)]), "mixture.sources.1.share"),
    (MixtureConfig(sources=[MixtureSource("a", share=0.6), MixtureSource("b", share=0.6)]), "mixture.sources"),
    (MixtureConfig(sources=[MixtureSource("a", share=0.5)]), "mixture.sources"),
    (MixtureConfig(sources=[MixtureSource("a")], schedule=ShareSchedule(source="reasoning")), "mixture.schedule.source"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("r")],
                   schedule=ShareSchedule(source="r", end_share=1.2)), "mixture.schedule.end_share"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("r")],
                   schedule=ShareSchedule(source="r", start_share=-0.1)), "mixture.schedule.start_share"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("r")],
                   schedule=ShareSchedule(source="r", kind="cosine")), "mixture.schedule.kind"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("r")],
                   schedule=ShareSchedule(source="r", start_step=10, end_step=5)), "mixture.schedule.end_step"),
    (MixtureConfig(sources=[MixtureSource("a"), MixtureSource("r", share=0.2)],
                   schedule=ShareSchedule(source="r")), "mixture.schedule.source"),
])
def test_bad_mixtures_fail_naming_the_key(config, key):
    with pytest.raises(ConfigError) as err:
        MixturePlan(config, 8)
    assert err.value.key == key


def test_mixture_loads_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "mixture.yaml"
    path.write_text(
        "sources:\n"
        "  - {name: medical, path: s3://b/med}\n"
        "  - {name: general, path: s3://b/web, share: 0.1}\n"
        "  - {name: reasoning, path: s3://b/cot}\n"
        "schedule: {source: reasoning, start_share: 0.05, end_share: 0.4, end_step: 1000}\n"
    )
    config = load_config(MixtureConfig, path, ["seed=7", "schedule.kind=step"])
    assert config.names == ["medical", "general", "reasoning"] and config.sources[1].share == 0.1
    assert config.seed == 7 and config.schedule.kind == "step"
    assert MixturePlan(config, 20).counts(0) == {"medical": 17, "general": 2, "reasoning": 1}
    with pytest.raises(ConfigError) as err:
        load_config(MixtureConfig, path, ["schedule.shape=linear"])
    assert err.value.key == "schedule.shape"
