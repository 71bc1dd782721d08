"""The per-field range rules (ssl_modal/core/ranges.py): parsing, messages, and where the loader checks them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from ssl_modal.core.config import ConfigError, from_dict
from ssl_modal.core.ranges import (
    Range,
    at_least,
    check_fields,
    dropout_rate,
    in_unit_interval,
    loss_weight,
    positive,
    ranged,
)


@pytest.mark.parametrize(
    "spec,inside,outside,described",
    [
        ("> 0", [1e-9, 3], [0, -1, math.nan], "> 0"),
        (">= 1", [1, 2.5], [0.999, -3], ">= 1"),
        ("< 1", [0.99, -5], [1, 2], "< 1"),
        ("<= 1", [1, 0], [1.01], "<= 1"),
        ("[0, 1]", [0, 0.5, 1], [-0.01, 1.01, math.nan], "in [0, 1]"),
        ("[0, 1)", [0, 0.99], [1, -1e-9], "in [0, 1)"),
        ("(0, 1]", [1, 1e-6], [0, 1.5], "in (0, 1]"),
        ("(0, 1)", [0.5], [0, 1], "in (0, 1)"),
        ("[-2.5, 3]", [-2.5, 3], [-2.6, 3.1], "in [-2.5, 3]"),
    ],
)
def test_range_specs_parse_hold_and_describe_themselves(spec, inside, outside, described):
    rule = Range(spec)
    assert all(rule.holds(x) for x in inside), inside
    assert not any(rule.holds(x) for x in outside), outside
    assert rule.describe() == described
    assert Range(spec, what="a weight").describe() == f"a weight {described}"


@pytest.mark.parametrize("spec", ["0..1", "> x", "[0 1]", "positive", ""])
def test_a_bad_range_spec_is_refused_when_the_dataclass_is_defined(spec):
    with pytest.raises(ValueError, match="range spec: expected e.g."):
        Range(spec)


def test_helpers_declare_the_usual_ranges():
    @dataclass
    class C:
        a: int = positive(1)
        b: int = at_least(2, 2)
        c: float = in_unit_interval(0.5)
        d: float = dropout_rate(0.1)
        e: float = loss_weight(1.0)
        f: list[int] = positive(factory=lambda: [1, 2])

    specs = {name: f.metadata["range"].describe() for name, f in C.__dataclass_fields__.items()}
    assert specs == {"a": "> 0", "b": ">= 2", "c": "in [0, 1]", "d": "in [0, 1)", "e": "a weight >= 0", "f": "> 0"}
    assert C().f == [1, 2] and C().f is not C().f  # factory: a fresh list per instance


@dataclass
class Inner:
    size: int = positive(4)
    rate: float = ranged("(0, 1]", 0.5)
    sizes: list[int] = positive(factory=lambda: [2, 3])
    weights: dict[str, float] = loss_weight(factory=dict)
    cap: int | None = positive(None)
    label: str = "x"
    plain: float = 1.0  # no rule: any number, but a number

    def __post_init__(self) -> None:
        self.per_item = 12 // self.size  # would divide by zero: the loader must check first


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    pair: tuple[float, float] = ranged("[0, 1)", (0.1, 0.2))


@pytest.mark.parametrize(
    "data,message",
    [
        ({"inner": {"size": 0}}, "inner.size: expected > 0, found 0"),
        ({"inner": {"size": -2}}, "inner.size: expected > 0, found -2"),
        ({"inner": {"rate": 0}}, r"inner.rate: expected in \(0, 1\], found 0"),
        ({"inner": {"rate": "nan"}}, r"inner.rate: expected in \(0, 1\], found nan"),
        ({"inner": {"sizes": [4, 0]}}, r"inner.sizes\[1\]: expected > 0, found 0"),
        ({"inner": {"sizes": [4, "two"]}}, r"inner.sizes\[1\]: expected an integer, found 'two'"),
        ({"inner": {"weights": {"a": 1, "b": -1}}}, "inner.weights.b: expected a weight >= 0, found -1"),
        ({"inner": {"cap": 0}}, "inner.cap: expected > 0, found 0"),
        ({"inner": {"size": "big"}}, "inner.size: expected an integer, found 'big'"),
        ({"inner": {"size": 2.5}}, "inner.size: expected an integer, found 2.5"),
        ({"inner": {"size": True}}, "inner.size: expected an integer, found True"),
        ({"inner": {"size": None}}, "inner.size: expected an integer, found None"),
        ({"inner": {"plain": "fast"}}, "inner.plain: expected a number, found 'fast'"),
        ({"inner": {"plain": [1]}}, r"inner.plain: expected a number, found \[1\]"),
        ({"pair": [0.5, 1.0]}, r"pair\[1\]: expected in \[0, 1\), found 1.0"),
        ({"inner": 3}, "inner: expected a mapping of its keys, found 3"),
    ],
)
def test_the_loader_names_the_dotted_key_the_range_and_the_value(data, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        from_dict(Outer, data)


def test_the_loader_reads_numbers_written_as_text_and_keeps_valid_values():
    cfg = from_dict(Outer, {"inner": {"size": "6", "rate": "1", "sizes": ["1e1"], "cap": None, "plain": 3}})
    assert (cfg.inner.size, cfg.inner.rate, cfg.inner.sizes, cfg.inner.cap) == (6, 1.0, [10], None)
    assert cfg.inner.per_item == 2 and isinstance(cfg.inner.size, int)
    assert from_dict(Outer, {"inner": {"size": 3.0}}).inner.size == 3
    assert from_dict(Outer, {"pair": [0, 0.5]}).pair == [0, 0.5]
    cfg = from_dict(Outer, {"inner": {"size": np.int64(5), "plain": np.float32(0.5)}})
    assert type(cfg.inner.size) is int and type(cfg.inner.plain) is float  # numpy scalars: plain numbers


def test_check_fields_checks_a_dataclass_built_in_python_with_the_full_key():
    cfg = Outer()
    check_fields(cfg)
    cfg.inner.rate = 2.0
    with pytest.raises(ConfigError, match=r"^inner.rate: expected in \(0, 1\], found 2.0$"):
        check_fields(cfg)
    with pytest.raises(ConfigError, match=r"^model.inner.rate:"):
        check_fields(cfg, "model")
    cfg.inner.rate, cfg.inner.size = 0.5, "7"  # text read as a number in place
    check_fields(cfg)
    assert cfg.inner.size == 7
