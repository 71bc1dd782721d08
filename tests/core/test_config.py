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
    with pytest.raises(ConfigError, match="train.learning_rate: expected a number, found 'fast'"):
        load_config(Recipe, None, ["train.learning_rate=fast"])
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer, found '1.5'"):
        from_dict(Recipe, {"train": {"max_steps": "1.5"}})
    assert from_dict(Recipe, {"train": {"max_steps": "1e4"}}).train.max_steps == 10000  # YAML 1.1 reads 1e4 as text
    assert from_dict(Recipe, {"train": {"max_steps": 200.0}}).train.max_steps == 200
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer, found True"):
        from_dict(Recipe, {"train": {"max_steps": True}})
    with pytest.raises(ConfigError, match=r"train.learning_rate: expected a number, found \[0.1\]"):
        from_dict(Recipe, {"train": {"learning_rate": [0.1]}})
    with pytest.raises(ConfigError, match="train: expected a mapping of its keys, found 5"):
        from_dict(Recipe, {"train": 5})
    assert from_dict(Recipe, {"train": None}).train == TrainConfig()  # an empty `train:` section: the defaults


def test_demo_section_merges_over_the_recipe_and_overrides_come_last(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "domain: vectors\nname: full\ntrain:\n  max_steps: 100\n  batch_size: 8\n"
        "demo:\n  name: small\n  train:\n    max_steps: 5\n"
    )
    full = load_config(Recipe, path)
    assert (full.name, full.train.max_steps, full.train.batch_size) == ("full", 100, 8)
    demo = load_config(Recipe, path, ["train.max_steps=3"], demo=True)
    assert (demo.name, demo.train.max_steps, demo.train.batch_size) == ("small", 3, 8)
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: x\n")
    with pytest.raises(ConfigError, match="--demo needs a 'demo:' section"):
        load_config(Recipe, plain, demo=True)


def test_recipe_main_prints_user_errors_without_traceback(tmp_path, capsys):
    from ssl_modal.core.script import recipe_main

    path = tmp_path / "r.yaml"
    path.write_text("train:\n  max_step: 1\n")
    assert recipe_main(lambda cfg: None, Recipe, str(path), "doc", []) == 2
    assert "unknown key 'train.max_step', did you mean 'max_steps'?" in capsys.readouterr().err
    seen = []
    path.write_text("name: ok\n")
    assert recipe_main(seen.append, Recipe, str(path), "doc", ["name=over"]) == 0
    assert seen[0].name == "over"
