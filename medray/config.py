"""One config system: a YAML file plus `key=value` overrides, checked against a dataclass.

Every job calls `load_config` before doing any work, so an unknown key or a
wrong type fails at once with the dotted key named, not an hour into a run.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from medray.errors import ConfigError

T = TypeVar("T")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def resolve_config_path(name: str | Path) -> Path:
    """A path as given, else under `conf/` (with or without `.yaml`)."""
    candidates = [Path(name)]
    for base in (Path("conf"), CONF_DIR):
        candidates += [base / str(name), base / f"{name}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError("<file>", f"config file {str(name)!r} not found (looked in ., conf/)")


def _key_of(exc: OmegaConfBaseException, fallback: str) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    return str(key) if key else fallback


def _merge(base: DictConfig, layer: Any, source: str, fallback: str = "<top level>") -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except ConfigKeyError as exc:
        raise ConfigError(_key_of(exc, fallback), "unknown key", source) from None
    except ValidationError as exc:
        msg = str(exc).splitlines()[0]
        raise ConfigError(_key_of(exc, fallback), f"wrong type or value ({msg})", source) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(_key_of(exc, fallback), str(exc).splitlines()[0], source) from None
    except TypeError as exc:  # e.g. a YAML list where a mapping belongs
        raise ConfigError(fallback, f"wrong structure ({exc})", source) from None


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "an override must look like key=value")
        out.append((key.strip(), value))
    return out


def load_config(schema: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults from `schema`, then the YAML file, then overrides; returns a `schema` instance."""
    if not is_dataclass(schema):
        raise TypeError("schema must be a dataclass")
    cfg = OmegaConf.structured(schema)
    if path is not None:
        file = resolve_config_path(path)
        try:
            data = OmegaConf.load(file)
        except Exception as exc:  # yaml errors carry line numbers in their text
            raise ConfigError("<file>", f"cannot parse YAML: {exc}", str(file)) from None
        cfg = _merge(cfg, data, str(file))
    for key, value in parse_overrides(overrides):
        parsed = OmegaConf.create({"v": _yaml_value(value)})["v"] if value != "" else ""
        try:
            layer = OmegaConf.create()
            OmegaConf.update(layer, key, parsed, force_add=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(key, str(exc).splitlines()[0], "override") from None
        cfg = _merge(cfg, layer, "override", fallback=key)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(missing[0], "required but not set")
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(_key_of(exc, "?"), str(exc).splitlines()[0]) from None


def with_changes(cfg: T, changes: Any, key: str) -> T:
    """A copy of the config instance `cfg` with the mapping `changes` merged in; errors name `key.<field>`.

    For a config that lists variants of another (more engines that share the
    job's sampling, say): each entry names only what differs.
    """
    if not isinstance(changes, dict) and not OmegaConf.is_dict(changes):
        raise ConfigError(key, f"expected a mapping of keys to change, got {type(changes).__name__}")
    try:
        merged = _merge(OmegaConf.structured(cfg), changes, "config")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except ConfigError as err:
        raise ConfigError(key if err.key == "<top level>" else f"{key}.{err.key}", err.message) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(key, str(exc).splitlines()[0]) from None


def _yaml_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def to_dict(cfg: Any) -> dict:
    """A config instance as plain data (for MLflow params and summaries)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
