"""Learning-rate shapes: warm-up, cosine to the floor, WSD's stable plateau and final decay."""

from __future__ import annotations

import pytest

from medray.errors import ConfigError
from medray.train.schedule import lr_multiplier
from medray.train.settings import ScheduleConfig, TrainConfig


def test_warmup_is_linear_to_the_peak():
    cfg = ScheduleConfig(kind="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_multiplier(s, 100, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_ends_at_the_floor_and_is_monotone_after_warmup():
    cfg = ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    values = [lr_multiplier(s, 100, cfg) for s in range(10, 101)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_multiplier(55, 100, cfg) == pytest.approx(0.55)  # half way: the mean of peak and floor


def test_wsd_holds_the_peak_then_decays_linearly_over_the_last_fraction():
    cfg = ScheduleConfig(kind="wsd", warmup_steps=5, min_lr_ratio=0.0, decay_fraction=0.2)
    assert all(lr_multiplier(s, 100, cfg) == 1.0 for s in range(5, 80))
    assert lr_multiplier(89, 100, cfg) == pytest.approx(0.5)
    assert lr_multiplier(99, 100, cfg) == pytest.approx(0.0)


def test_constant_after_warmup():
    cfg = ScheduleConfig(kind="constant", warmup_steps=2)
    assert [lr_multiplier(s, 10, cfg) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("change, key", [
    ({"schedule": ScheduleConfig(kind="linear")}, "schedule.kind"),
    ({"global_batch_size": 12, "micro_batch_size": 4}, "global_batch_size"),
    ({"max_steps": 0}, "max_steps"),
    ({"fail_at_step": 100, "max_steps": 100}, "fail_at_step"),
])
def test_train_config_errors_name_the_key(change, key):
    cfg = TrainConfig(**change)
    cfg.model.vocab_size = 64
    with pytest.raises(ConfigError) as err:
        cfg.check()
    assert err.value.key == key
