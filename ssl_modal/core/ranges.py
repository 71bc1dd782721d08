"""Allowed ranges of numeric config keys, declared on the dataclass field and checked when a recipe loads.

    @dataclass
    class ModelConfig:
        hidden_size: int = positive(256)             # > 0
        dropout: float = dropout_rate(0.1)           # [0, 1)
        span: float = ranged("(0, 1]", 0.3)          # any interval or bound, written as in the message
        widths: list[int] = at_least(1, factory=lambda: [32, 64])   # lists: every item

`from_dict` (the recipe loader) checks each value it is given against its field's rule, with the full
dotted key, before the dataclass is built: `model.hidden_size: expected > 0, found 0`. Values of int and
float fields are type-checked whether or not they carry a rule (`model.hidden_size: expected an integer,
found 'big'`); `check_fields(config, where)` checks a built dataclass the same way (Python-API use).
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from .config import ConfigError

_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_BOUND = re.compile(rf"^(>=|>|<=|<)\s*({_NUMBER})$")
_INTERVAL = re.compile(rf"^([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])$")


@dataclasses.dataclass(frozen=True)
class Range:
    """A bound (`">= 1"`, `"> 0"`) or an interval (`"[0, 1)"`) that a number, or every item of a list, must meet."""

    spec: str
    what: str = ""  # a noun for the message: "a weight" -> "expected a weight >= 0"
    low: float | None = dataclasses.field(init=False, default=None)
    high: float | None = dataclasses.field(init=False, default=None)
    low_open: bool = dataclasses.field(init=False, default=False)
    high_open: bool = dataclasses.field(init=False, default=False)

    def __post_init__(self) -> None:
        bound, interval = _BOUND.match(self.spec.strip()), _INTERVAL.match(self.spec.strip())
        if bound:
            op, value = bound.group(1), float(bound.group(2))
            side = "low" if op.startswith(">") else "high"
            object.__setattr__(self, side, value)
            object.__setattr__(self, f"{side}_open", "=" not in op)
        elif interval:
            object.__setattr__(self, "low", float(interval.group(2)))
            object.__setattr__(self, "high", float(interval.group(3)))
            object.__setattr__(self, "low_open", interval.group(1) == "(")
            object.__setattr__(self, "high_open", interval.group(4) == ")")
        else:
            raise ValueError(f"range spec: expected e.g. '>= 1', '> 0' or '[0, 1)', found {self.spec!r}")

    def holds(self, x: float) -> bool:
        """True when `x` lies in the range (NaN never does)."""
        if self.low is not None and not (x > self.low if self.low_open else x >= self.low):
            return False
        if self.high is not None and not (x < self.high if self.high_open else x <= self.high):
            return False
        return x == x

    def describe(self) -> str:
        text = self.spec.strip() if _BOUND.match(self.spec.strip()) else f"in {self.spec.strip()}"
        return f"{self.what} {text}" if self.what else text


def ranged(spec: str, default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, what: str = ""):
    """A dataclass field whose value (or each item of its list value) must lie in `spec`."""
    meta = {"range": Range(spec, what)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def positive(default: Any = dataclasses.MISSING, **kw: Any):
    """Sizes, temperatures, learning rates: > 0."""
    return ranged("> 0", default, **kw)


def at_least(low: float, default: Any = dataclasses.MISSING, **kw: Any):
    """Counts with a floor: >= low."""
    return ranged(f">= {low:g}", default, **kw)


def non_negative(default: Any = dataclasses.MISSING, **kw: Any):
    """Counts and amounts where 0 means none or off: >= 0."""
    return ranged(">= 0", default, **kw)


def loss_weight(default: Any = dataclasses.MISSING, **kw: Any):
    """A loss weight: >= 0 (0 switches the term off)."""
    return ranged(">= 0", default, what="a weight", **kw)


def in_unit_interval(default: Any = dataclasses.MISSING, **kw: Any):
    """Probabilities and fractions: [0, 1]."""
    return ranged("[0, 1]", default, **kw)


def dropout_rate(default: Any = dataclasses.MISSING, **kw: Any):
    """Dropout: [0, 1)."""
    return ranged("[0, 1)", default, **kw)


# ---- checking ------------------------------------------------------------------------------------
def _args(tp: Any) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def number_kind(tp: Any) -> type | None:
    """int or float when `tp` (maybe Optional) is a number type, else None."""
    kinds = [a for a in _args(tp) if a is not type(None)]
    if kinds == [int]:
        return int
    if kinds and all(k in (int, float) for k in kinds):
        return float
    return None


def item_kind(tp: Any) -> type | None:
    """int or float for the items of list[int], tuple[float, float], dict[str, float] (values) and the like."""
    for arg in _args(tp):
        origin, inner = typing.get_origin(arg), typing.get_args(arg)
        items = inner[:1] if origin in (list, tuple) else inner[1:] if origin is dict else ()
        if items and number_kind(items[0]) is not None:
            return number_kind(items[0])
    return None


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def as_number(value: Any, kind: type, path: str) -> Any:
    """`value` as an int/float (numbers written as strings are read; 1e4 or 3.0 fit an int), else ConfigError."""
    name = "an integer" if kind is int else "a number"
    number = value
    if isinstance(value, str):
        try:
            number = float(value) if kind is float or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise ConfigError(f"{path}: expected {name}, found {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise ConfigError(f"{path}: expected {name}, found {_shown(value)}")
    if not isinstance(number, (int, float)):  # numpy scalars: plain Python numbers (YAML-able)
        number = int(number) if isinstance(number, numbers.Integral) else float(number)
    if kind is int and isinstance(number, float):
        if not number.is_integer():
            raise ConfigError(f"{path}: expected {name}, found {_shown(value)}")
        number = int(number)
    return number


def check_value(f: dataclasses.Field, tp: Any, value: Any, path: str) -> Any:
    """`value` for field `f` (type hint `tp`) type-checked against its number type and its rule; ConfigError naming
    `path`, the rule and the value otherwise. Numbers written as strings come back as numbers."""
    rule: Range | None = f.metadata.get("range")
    if value is None and type(None) in _args(tp):
        return value
    kind = number_kind(tp)
    if kind is not None:
        return _checked_number(value, kind, rule, path)
    kind = item_kind(tp)
    if rule is None or (kind is None and not isinstance(value, (list, tuple))):
        return value
    kind = kind or float  # a bare `list` with a rule: numbers
    if isinstance(value, dict):
        return {k: _checked_number(v, kind, rule, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_checked_number(v, kind, rule, f"{path}[{i}]") for i, v in enumerate(value))
    return value


def _checked_number(value: Any, kind: type, rule: Range | None, path: str) -> Any:
    """One number (a field's value or a list/dict item) read as `kind` and held to `rule` when there is one."""
    value = as_number(value, kind, path)
    if rule is not None and not rule.holds(value):
        raise ConfigError(f"{path}: expected {rule.describe()}, found {_shown(value)}")
    return value


def check_fields(config: Any, where: str = "") -> None:
    """Check every field of a built dataclass (and its nested dataclasses) against its type and rule."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        path = f"{where}.{f.name}" if where else f.name
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, path)
        else:
            checked = check_value(f, hints[f.name], value, path)
            if checked != value:  # a number written as text, now read
                object.__setattr__(config, f.name, checked)
