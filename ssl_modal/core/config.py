"""Configs are dataclasses; a YAML recipe is a saved dataclass.

`from_dict` builds nested dataclasses and rejects unknown keys with a suggestion;
`load_config` reads YAML and applies `key.sub=value` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override that does not fit the config dataclass."""


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f", did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(choices))}"


def _dataclass_type(tp: Any) -> type | None:
    """The dataclass inside `tp` (also inside Optional[...]), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass `cls` from a (nested) dict. Unknown keys raise ConfigError naming the key; so do values
    that break their field's type or declared range (`ssl_modal.core.ranges`), checked before `cls` is built.
    Numbers written as strings ("3e-3": YAML 1.1 sees a string) are read into int/float fields."""
    from .ranges import check_value

    if not isinstance(data, (dict, type(None))):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, found {type(data).__name__}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls))}
    names = list(fields)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown key '{path}'{_suggest(key, names)}")
        sub = _dataclass_type(hints[key])
        if sub is not None and (isinstance(value, dict) or (value is None and sub is hints[key])):
            value = from_dict(sub, value, path)  # an empty section (`model:` with no keys) keeps the defaults
        elif sub is not None and value is not None and not isinstance(value, sub):
            raise ConfigError(f"{path}: expected a mapping of its keys, found {value!r}")
        else:
            value = check_value(fields[key], hints[key], value, path)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def to_dict(config: Any) -> dict:
    """A plain, YAML-able dict of a dataclass config."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings (values parsed as YAML: numbers, bools, lists) to a nested dict."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        dotted, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = data
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def merge(base: dict, extra: dict) -> dict:
    """`extra` merged over `base`, recursing into nested mappings."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def recipe_dict(path: str | Path, overrides: list[str] | None = None, demo: bool = False) -> tuple[str | None, dict]:
    """(domain, settings) of a YAML recipe: its `demo:` section merged over the rest when `demo`, then overrides.

    A recipe's `demo:` section holds the settings that make it run offline on examples/data in about a minute.
    """
    data = load_yaml(path)
    domain = data.pop("domain", None)
    demo_section = data.pop("demo", None)
    if demo:
        if not isinstance(demo_section, dict) or not demo_section:
            raise ConfigError(f"{path}: --demo needs a 'demo:' section")
        data = merge(data, demo_section)
    data = apply_overrides(data, overrides or [])
    return data.pop("domain", domain), data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None, demo: bool = False
) -> T:
    """Read a YAML recipe into dataclass `cls` (see `recipe_dict`), applying command-line overrides."""
    data = recipe_dict(path, overrides, demo)[1] if path is not None else apply_overrides({}, overrides or [])
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None


def save_config(config: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as fh:
        yaml.safe_dump(to_dict(config), fh, sort_keys=False)
