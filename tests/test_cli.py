"""`ssl-modal train|eval|embed|inspect` end to end on the vectors domain, and recipe typos."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ssl_modal.cli import main


@pytest.fixture()
def recipe(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    x = rng.normal(size=(300, 8)) + 3.0 * np.eye(3, 8)[labels]
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    frame["label"] = labels
    frame["key"] = [f"k{i}" for i in range(300)]
    frame.to_csv(tmp_path / "table.csv", index=False)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"""domain: vectors
model: {{dim: 8, embed_dim: 8}}
data: {{file: {tmp_path / "table.csv"}, label_column: label}}
train: {{output_dir: {tmp_path / "run"}, max_steps: 40, batch_size: 32, progress: false, tensorboard: false}}
""")
    return path


def test_train_eval_inspect_embed(recipe, tmp_path, capsys):
    assert main(["train", str(recipe), "train.max_steps=30", "train.learning_rate=0.003"]) == 0
    assert "trained to step 30" in capsys.readouterr().out
    assert main(["eval", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "ssl encoder" in out and "raw features" in out and "linear acc" in out
    assert main(["inspect", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "kind: vectors" in out and "ssl_modal.vectors.model:build_vector_model" in out and "embed_dim: 8" in out
    assert "step: 30" in out  # model.pt records its step
    target = tmp_path / "emb.parquet"
    assert (
        main(
            [
                "embed",
                str(tmp_path / "run" / "model.pt"),
                str(tmp_path / "table.csv"),
                "-o",
                str(target),
                "--id-column",
                "key",
            ]
        )
        == 0
    )
    table = pq.read_table(target)
    assert table.num_rows == 300 and table.column("key").to_pylist()[:2] == ["k0", "k1"]


def test_recipe_typo_suggests_key(recipe, capsys):
    assert main(["train", str(recipe), "train.lerning_rate=0.1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.lerning_rate', did you mean 'learning_rate'?" in err and str(recipe) in err
    assert main(["train", str(recipe), "domain=txt"]) == 2
    assert "unknown domain 'txt', did you mean 'text'?" in capsys.readouterr().err


def test_inspect_rejects_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert main(["inspect", str(bad)]) == 2
    assert "truncated, corrupt" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "ssl-modal"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("train", "embed", "eval", "validate", "inspect"):
        assert command in result.stdout


def test_inspect_shortens_nested_long_values():
    from ssl_modal.cli import _shorten

    short = _shorten({"tokenizer": {"json": "x" * 5000, "vocab": list(range(300))}, "size": 4, "tags": ["a"]})
    assert short == {"tokenizer": {"json": "<5000 characters>", "vocab": "<300 entries>"}, "size": 4, "tags": ["a"]}
