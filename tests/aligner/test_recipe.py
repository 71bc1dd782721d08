"""The aligner recipe end to end on tiny generated data, its --demo config, and `ssl-modal eval`."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from ssl_modal.aligner.config import AlignerConfig
from ssl_modal.cli import main as cli_main
from ssl_modal.core.config import load_config

REPO = Path(__file__).resolve().parents[2]
YAML = REPO / "recipes" / "clip_flickr.yaml"


def recipe_module():
    spec = importlib.util.spec_from_file_location("clip_flickr_recipe", REPO / "recipes" / "clip_flickr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_overrides(shapes, out, max_steps: int) -> list[str]:
    """The recipe shrunk to the generated shapes: seconds per run."""
    return [
        f"data.manifest={shapes}",
        "data.image_root=null",
        f"train.output_dir={out}",
        f"train.max_steps={max_steps}",
        "train.batch_size=8",
        "train.progress=false",
        "model.image.image_size=32",
        "model.image.patch_size=8",
        "model.image.width=32",
        "model.image.centroids=16",
        "model.image.grid=5",
        "model.text.width=32",
        "model.text.vocab_size=60",
        "model.embed_dim=16",
        "data.test_fraction=0.25",
        "eval.grid_captions=2",
        "eval.zero_shot_classes=[red, green, blue, yellow]",
    ]


def test_demo_config_is_offline_and_full_config_uses_shared_data():
    demo = load_config(AlignerConfig, YAML, demo=True)
    assert "shared" not in demo.data.manifest and (REPO / demo.data.manifest).is_file()
    assert len(pd.read_csv(REPO / demo.data.manifest)) == 500
    full = load_config(AlignerConfig, YAML)
    assert "shared/data/images/flickr8k" in full.data.manifest and full.model.image.arch == "patches"
    assert demo.model.image.arch == "vit" and demo.model.text.arch == "bert" and not demo.data.sample_captions


def test_recipe_writes_every_output_and_eval_prints_the_table(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    overrides = tiny_overrides(shapes, out, max_steps=4)
    assert recipe_module().main(["--config", str(YAML), *overrides]) == 0
    printed = capsys.readouterr().out
    assert "random-init model" in printed and "trained" in printed and "chance" in printed
    for name in (
        "model.pt",
        "metrics.jsonl",
        "loss_curve.png",
        "retrieval_grid.png",
        "retrieval.json",
        "image_embeddings.parquet",
        "text_embeddings.parquet",
    ):
        assert (out / name).is_file(), name
    texts = pd.read_parquet(out / "text_embeddings.parquet")
    assert list(texts.columns) == ["image", "caption", "embedding"] and len(texts) == 8
    assert len(pd.read_parquet(out / "image_embeddings.parquet")) == 4
    rows = json.loads((out / "retrieval.json").read_text())["rows"]
    assert rows["chance"]["t2i_R@1"] == 0.25
    assert rows["chance"]["zero_shot_cap_acc"] == rows["chance"]["zero_shot_acc"]  # both: the majority share
    assert 0 <= rows["trained"]["zero_shot_cap_acc"] <= 1 and "zero_shot_cap_acc" in rows["random-init model"]
    assert cli_main(["eval", str(YAML), *overrides]) == 0
    assert "i2t_R@1" in capsys.readouterr().out


def test_rerun_in_the_same_folder_reuses_the_saved_vocabulary(shapes, tmp_path, monkeypatch):
    """WordPiece training breaks ties differently in each process: a second run (make demo twice) must resume
    with the vocabulary of the first, or its checkpoint is another model's and is refused."""
    out = tmp_path / "run"
    overrides = tiny_overrides(shapes, out, max_steps=2)
    module = recipe_module()
    assert module.main(["--config", str(YAML), *overrides]) == 0
    first = (out / "tokenizer.json").read_text()

    def no_new_vocabulary(*args, **kwargs):
        raise AssertionError("a resumed run trained a new caption vocabulary")

    monkeypatch.setattr("ssl_modal.aligner.recipe.train_wordpiece", no_new_vocabulary)
    assert module.main(["--config", str(YAML), *overrides]) == 0
    assert (out / "tokenizer.json").read_text() == first


def test_batch_size_one_is_a_clear_error(shapes, tmp_path, capsys):
    code = recipe_module().main(
        [
            "--config",
            str(YAML),
            f"data.manifest={shapes}",
            "data.image_root=null",
            f"train.output_dir={tmp_path / 'r'}",
            "train.batch_size=1",
            "train.max_steps=1",
            "train.progress=false",
            "model.image.layers=1",
            "model.text.layers=1",
        ]
    )
    assert code == 2
    assert "contrastive loss needs at least 2 image-text pairs per (global) batch, found 1" in capsys.readouterr().err


def test_eval_test_manifest_is_the_held_out_set_and_test_fraction_zero_trains_on_everything(shapes, tmp_path):
    from ssl_modal.aligner.recipe import evaluate, read_split, train

    from .conftest import tiny_config, write_shapes

    other = write_shapes(tmp_path / "other", n_images=8, seed=1)
    cfg = tiny_config(shapes, tmp_path / "run")
    cfg.data.test_fraction = 0.0
    train_pairs, test = read_split(cfg)
    assert len(train_pairs) == 32 and len(test) == 0
    cfg.eval.test = {"manifest": str(other)}
    train_pairs, test = read_split(cfg)
    assert len(train_pairs) == 32 and len(test) == 16 and all("other" in p for p in test.paths)
    train(cfg)
    table = evaluate(cfg)
    assert table.n_images == 8 and table.n_captions == 16 and table.rows["chance"]["t2i_R@1"] == 1 / 8
    cfg.eval.test = {"manifst": str(other)}
    with pytest.raises(ValueError, match="unknown key 'eval.test.manifst', did you mean 'manifest'"):
        read_split(cfg)
    cfg.eval.test = {"manifest": str(shapes)}
    with pytest.raises(ValueError, match=r"eval.test manifest .* shares 16 image\(s\) with the training data"):
        read_split(cfg)


def test_eval_test_section_in_yaml_and_nothing_held_out_is_said(shapes, tmp_path, capsys):
    other = Path(str(shapes).replace("shapes", "unused"))  # a missing eval manifest is a clear error
    overrides = [
        f"data.manifest={shapes}",
        "data.image_root=null",
        f"train.output_dir={tmp_path / 'r'}",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.progress=false",
        "model.image.image_size=32",
        "model.image.patch_size=8",
        "model.image.width=32",
        "model.image.layers=1",
        "model.image.heads=2",
        "model.text.width=32",
        "model.text.layers=1",
        "model.text.heads=2",
        "model.text.vocab_size=60",
        "data.test_fraction=0",
    ]
    assert recipe_module().main(["--config", str(YAML), *overrides]) == 0
    assert "nothing held out (data.test_fraction=0, no eval.test)" in capsys.readouterr().out
    code = recipe_module().main(["--config", str(YAML), *overrides, f"eval.test.manifest={other}"])
    assert code == 2 and "unused" in capsys.readouterr().err
