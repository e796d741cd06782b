"""load_config: YAML + dotted overrides checked against a dataclass; errors name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from medray.config import load_config, parse_overrides, to_dict
from medray.errors import ConfigError


@dataclass
class Optim:
    name: str = "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Job:
    epochs: int = 1
    seed: Optional[int] = None  # noqa: UP045 - the Optional spelling is what configs use
    tags: list[str] = field(default_factory=list)
    debug: bool = False
    out: str = "runs/out"
    optim: Optim = field(default_factory=Optim)


@dataclass
class NeedsData:
    data: str  # no default: required
    epochs: int = 1


YAML = """\
epochs: 3
tags: [ct, mri]
optim:
  lr: 0.01
"""


@pytest.fixture
def yaml_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(YAML, encoding="utf-8")
    return path


def test_defaults_only():
    cfg = load_config(Job)
    assert cfg == Job()
    assert isinstance(cfg.optim, Optim)


def test_yaml_file(yaml_file):
    cfg = load_config(Job, yaml_file)
    assert isinstance(cfg, Job)
    assert cfg.epochs == 3
    assert cfg.tags == ["ct", "mri"]
    assert cfg.optim == Optim(lr=0.01)  # the rest of the nested block keeps its defaults
    assert cfg.seed is None
    assert load_config(Job, str(yaml_file)) == cfg  # str or Path


def test_overrides_with_type_conversion(yaml_file):
    cfg = load_config(
        Job,
        yaml_file,
        [
            "epochs=7",
            "optim.lr=0.5",
            "seed=42",
            "debug=true",
            "tags=[a,b,c]",
            "optim.betas=[0.1, 0.2]",
            "out=123",
        ],
    )
    assert cfg.epochs == 7 and isinstance(cfg.epochs, int)
    assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
    assert cfg.seed == 42
    assert cfg.debug is True
    assert cfg.tags == ["a", "b", "c"]
    assert cfg.optim.betas == [0.1, 0.2]
    assert cfg.out == "123" and isinstance(cfg.out, str)
    assert cfg.optim.name == "adamw"


def test_overrides_apply_in_order_and_optional_takes_null(yaml_file):
    cfg = load_config(Job, yaml_file, ["seed=1", "seed=null", "epochs=2", "epochs=5"])
    assert cfg.seed is None
    assert cfg.epochs == 5
    assert load_config(Job, None, ["optim.lr=2"]).optim.lr == 2.0  # int literal into a float


def test_to_dict(yaml_file):
    cfg = load_config(Job, yaml_file, ["seed=3"])
    assert to_dict(cfg) == {
        "epochs": 3,
        "seed": 3,
        "tags": ["ct", "mri"],
        "debug": False,
        "out": "runs/out",
        "optim": {"name": "adamw", "lr": 0.01, "betas": [0.9, 0.999]},
    }


def test_config_found_under_conf(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "quick.yaml").write_text("epochs: 9\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config(Job, "quick").epochs == 9
    assert load_config(Job, "quick.yaml").epochs == 9


# ---- errors ---------------------------------------------------------------------------------


def test_unknown_key_in_yaml_names_dotted_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\noptim:\n  lrr: 0.01\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(Job, path)
    err = info.value
    assert err.key == "optim.lrr"
    assert err.source == str(path)
    assert "'optim.lrr'" in str(err) and str(path) in str(err)
    assert "unknown key" in str(err)


def test_unknown_top_level_key_in_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epoch: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'epoch'") as info:
        load_config(Job, path)
    assert info.value.key == "epoch"


def test_unknown_override_key(yaml_file):
    with pytest.raises(ConfigError) as info:
        load_config(Job, yaml_file, ["optim.momentum=0.9"])
    assert info.value.key == "optim.momentum"
    assert "'optim.momentum'" in str(info.value) and "unknown key" in str(info.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("epochs=abc", "epochs"),
        ("epochs=1.5", "epochs"),
        ("optim.lr=fast", "optim.lr"),
        ("seed=abc", "seed"),
        ("debug=maybe", "debug"),
        ("tags=notalist", "tags"),
    ],
)
def test_wrong_type_override_names_the_key(yaml_file, override, key):
    with pytest.raises(ConfigError) as info:
        load_config(Job, yaml_file, [override])
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)
    assert "wrong type" in str(info.value)


def test_wrong_type_in_yaml_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: fast\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(Job, path)
    assert info.value.key == "optim.lr"
    assert info.value.source == str(path)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml") as info:
        load_config(Job, missing)
    assert "not found" in str(info.value)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("epochs: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot parse YAML") as info:
        load_config(Job, path)
    assert info.value.source == str(path)
    assert "line" in str(info.value)


@pytest.mark.parametrize("override", ["epochs", "=3", "", "  =x"])
def test_override_without_equals_or_key(override):
    with pytest.raises(ConfigError, match="key=value") as info:
        load_config(Job, None, [override])
    assert info.value.key == override


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "c= x ", "d=", "e=f=g"]) == [
        ("a.b", "1"),
        ("c", " x "),
        ("d", ""),
        ("e", "f=g"),
    ]


def test_required_key(tmp_path):
    with pytest.raises(ConfigError, match="'data'") as info:
        load_config(NeedsData)
    assert "required" in str(info.value)
    assert load_config(NeedsData, None, ["data=s3://bucket/x"]).data == "s3://bucket/x"


def test_schema_must_be_a_dataclass():
    with pytest.raises(TypeError):
        load_config(dict)


# ---- regressions of fixed defects --------------------------------------------------------


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(Job, path)
    assert info.value.source == str(path)


def test_scalar_for_a_section_names_the_key(yaml_file):
    with pytest.raises(ConfigError) as info:
        load_config(Job, yaml_file, ["optim=3"])
    assert info.value.key == "optim"


@dataclass
class _Inner:
    rate: float = 0.5


@dataclass
class _Outer:
    name: str = "a"
    inner: _Inner = field(default_factory=_Inner)


def test_with_changes_copies_a_config_and_names_bad_keys():
    from medray.config import with_changes

    base = _Outer()
    changed = with_changes(base, {"inner": {"rate": 0.9}}, "variants.0")
    assert (changed.name, changed.inner.rate, base.inner.rate) == ("a", 0.9, 0.5)  # the original is untouched
    with pytest.raises(ConfigError) as err:
        with_changes(base, {"inner": {"rate": "fast"}}, "variants.1")
    assert err.value.key == "variants.1.inner.rate"
    with pytest.raises(ConfigError) as err:
        with_changes(base, ["not", "a", "mapping"], "variants.2")
    assert err.value.key == "variants.2" and "mapping" in str(err.value)
