"""The one eval-data scheme: eval.train / eval.test take the data section's keys and inherit the rest."""

from dataclasses import dataclass, field

import pytest

from ssl_modal.core.config import ConfigError, from_dict
from ssl_modal.core.eval_data import EvalData


@dataclass
class Data:
    manifest: str = "train.csv"
    sample_rate: int = 8000


@dataclass
class Recipe:
    data: Data = field(default_factory=Data)
    eval: EvalData = field(default_factory=EvalData)


def test_sections_inherit_the_data_keys_they_do_not_set():
    cfg = from_dict(
        Recipe,
        {"data": {"sample_rate": 16000}, "eval": {"train": {"manifest": "a.csv"}, "test": {"manifest": "b.csv"}}},
    )
    train, test = cfg.eval.resolve(cfg.data)
    assert (train.manifest, train.sample_rate) == ("a.csv", 16000)
    assert (test.manifest, test.sample_rate) == ("b.csv", 16000)
    assert cfg.eval.separate


def test_without_eval_section_the_probe_uses_data_and_no_separate_test():
    cfg = from_dict(Recipe, {})
    train, test = cfg.eval.resolve(cfg.data)
    assert train is cfg.data and test is None and not cfg.eval.separate


def test_typos_and_half_sections_are_named():
    cfg = from_dict(Recipe, {"eval": {"test": {"manifst": "b.csv"}}})
    with pytest.raises(ConfigError, match="unknown key 'eval.test.manifst', did you mean 'manifest'"):
        cfg.eval.resolve(cfg.data)
    with pytest.raises(ConfigError, match="eval.train is set but eval.test is not"):
        from_dict(Recipe, {"eval": {"train": {"manifest": "a.csv"}}})
    with pytest.raises(ConfigError, match="eval.test: expected a mapping"):
        from_dict(Recipe, {"eval": {"test": "b.csv"}})
