"""Window shards: the pandas engine's folder, streaming training with exact resume, the CLI round trip."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import torch

from ssl_modal.cli import main
from ssl_modal.core.checkpoint import load_checkpoint
from ssl_modal.core.config import from_dict
from ssl_modal.transactions import ColumnMapping, PreprocessConfig, TransactionPreprocessor
from ssl_modal.transactions.config import TransactionsConfig
from ssl_modal.transactions.shards import WindowShards, train_from_shards, write_shards_pandas

from .tables import COLUMNS, raw_table


def _shards(tmp_path, partitions=3):
    pre = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS), max_length=16, amount_bins=8))
    report = write_shards_pandas(pre, raw_table(clients=12, per_client=40), tmp_path / "shards", partitions=partitions)
    return pre, report


def _cfg(tmp_path, out, steps):
    return from_dict(
        TransactionsConfig,
        {
            "data": {"shards": str(tmp_path / "shards"), "task": "export"},
            "encoder": {"hidden": 16, "mcc_dim": 4, "cat_dim": 4, "num_dim": 4},
            "train": {
                "output_dir": str(out),
                "max_steps": steps,
                "batch_size": 8,
                "warmup_steps": 2,
                "log_every": 1,
                "checkpoint_every": 3,
                "keep_last": 5,
                "progress": False,
                "tensorboard": False,
                "monitor_every": 0,
            },
        },
    )


def test_pandas_engine_writes_whole_clients_per_shard(tmp_path):
    pre, report = _shards(tmp_path)
    files = sorted((tmp_path / "shards" / "windows").glob("*.parquet"))
    clients = [set(pq.read_table(f, columns=["client_id"]).column(0).to_pylist()) for f in files]
    assert len(files) >= 2 and sum(map(len, clients)) == len(set().union(*clients)) == 12
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == report["windows"] == 12 * 3
    data = WindowShards(tmp_path / "shards")
    assert len(data) == 36 and data.fields == pre.fields
    assert json.loads((tmp_path / "shards" / "preprocessor.json").read_text()) == pre.state_dict()
    assert sum(report["field_counts"]["mcc"]) == 12 * 40


def test_streaming_training_resumes_exactly(tmp_path):
    _shards(tmp_path)
    straight = train_from_shards(_cfg(tmp_path, tmp_path / "a", 7))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for later in ("model.pt", "checkpoints/step-00000006.pt", "checkpoints/step-00000007.pt"):
        (tmp_path / "b" / later).unlink()  # as if killed after step 3 (epoch 0, batch 3 of 4)
    resumed = train_from_shards(_cfg(tmp_path, tmp_path / "b", 7))
    assert straight.step == resumed.step == 7 and len(resumed.history) == 4
    a, b = load_checkpoint(tmp_path / "a" / "model.pt")["model"], load_checkpoint(tmp_path / "b" / "model.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    losses = [r["loss"] for r in straight.history if "loss" in r]
    assert len(losses) == 7 and all(torch.isfinite(torch.tensor(losses)))


def test_cli_preprocess_then_train_from_shards(tmp_path, capsys):
    table = tmp_path / "tx.csv"
    raw_table(clients=8, per_client=30).to_csv(table, index=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""domain: transactions
data: {{table: {table}, task: export}}
columns: {json.dumps(COLUMNS)}
preprocess: {{max_length: 16}}
encoder: {{hidden: 16, mcc_dim: 4, cat_dim: 4, num_dim: 4}}
train: {{output_dir: {tmp_path / "run"}, max_steps: 2, batch_size: 4, progress: false, tensorboard: false}}
""")
    assert main(["preprocess", str(recipe), "-o", str(tmp_path / "sh"), "--partitions", "2"]) == 0
    assert "wrote 16 windows of 8 clients (240 of 240 rows)" in capsys.readouterr().out
    assert main(["train", str(recipe), f"data.shards={tmp_path / 'sh'}"]) == 0
    assert (tmp_path / "run" / "model.pt").exists()
    with pytest.raises(SystemExit):
        main(["preprocess", str(recipe), "-o", str(tmp_path / "x"), "--engine", "dask"])


@pytest.mark.slow
def test_torchrun_ranks_stream_their_own_shards(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _shards(tmp_path, partitions=4)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""domain: transactions
data: {{shards: {tmp_path / "shards"}, task: export}}
encoder: {{hidden: 16, mcc_dim: 4, cat_dim: 4, num_dim: 4}}
train: {{output_dir: {tmp_path / "run"}, max_steps: 4, batch_size: 4, progress: false, tensorboard: false,
         log_every: 1}}
""")
    repo = Path(__file__).resolve().parents[2]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "ssl_modal.cli",
            "train",
            str(recipe),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("trained to step 4") == 2
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000004.pt")
    per_epoch = WindowShards(tmp_path / "shards").batches_per_epoch(4, 2)  # the smaller rank share's batches
    assert len(saved["rng"]) == 2 and per_epoch < 4
    assert saved["trainer"]["epoch"] * per_epoch + saved["trainer"]["batch_in_epoch"] == 4
