"""Recipe configs: nested dataclasses, typo suggestions, command-line overrides."""
from dataclasses import dataclass, field

import pytest

from ssl_modal import ConfigError, TrainConfig, load_config
from ssl_modal.core.config import apply_overrides, from_dict, save_config, to_dict


@dataclass
class Recipe:
    name: str = "x"
    train: TrainConfig = field(default_factory=TrainConfig)


def test_nested_config_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: demo\ntrain:\n  max_steps: 7\n  learning_rate: 0.01\n")
    cfg = load_config(Recipe, path, ["train.batch_size=4", "train.betas=[0.8, 0.9]", "name=other"])
    assert cfg.name == "other" and cfg.train.max_steps == 7 and cfg.train.batch_size == 4
    assert cfg.train.learning_rate == 0.01 and cfg.train.betas == (0.8, 0.9)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Recipe, tmp_path / "saved.yaml") == cfg


def test_unknown_key_suggests_the_closest(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.lerning_rate', did you mean 'learning_rate'\?"):
        load_config(Recipe, path)
    with pytest.raises(ConfigError, match="unknown key 'zzz'; valid keys: name, train"):
        from_dict(Recipe, {"zzz": 1})
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        load_config(Recipe, None, ["train.max_step=3"])


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.max_steps"])
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(Recipe, tmp_path / "nope.yaml")
    assert to_dict(Recipe())["train"]["max_steps"] == TrainConfig().max_steps


def test_numbers_written_as_strings_are_read_or_rejected_by_key():
    cfg = load_config(Recipe, None, ["train.learning_rate=3e-3", "train.max_steps=12"])
    assert cfg.train.learning_rate == 0.003 and isinstance(cfg.train.learning_rate, float)
    cfg = from_dict(Recipe, {"train": {"max_steps": "7"}})
    assert cfg.train.max_steps == 7
    with pytest.raises(ConfigError, match="key 'train.learning_rate': expected a number, found 'fast'"):
        load_config(Recipe, None, ["train.learning_rate=fast"])
    with pytest.raises(ConfigError, match="key 'train.max_steps': expected an integer, found '1.5'"):
        from_dict(Recipe, {"train": {"max_steps": "1.5"}})
