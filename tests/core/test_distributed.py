"""DDP under torchrun (gloo, CPU): 2 processes x batch 8 match 1 process x batch 16."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_modal.core.checkpoint import load_checkpoint
from ssl_modal.core.distributed import DistInfo, ShardedEpochSampler
from ssl_modal.core.monitors import read_metrics

REPO = Path(__file__).resolve().parents[2]


def test_sampler_shards_global_batches_like_one_process():
    one = list(ShardedEpochSampler(50, 8, epoch=3, seed=1, info=DistInfo(0, 1)))
    r0 = list(ShardedEpochSampler(50, 4, epoch=3, seed=1, info=DistInfo(0, 2)))
    r1 = list(ShardedEpochSampler(50, 4, epoch=3, seed=1, info=DistInfo(1, 2)))
    assert len(one) == 48 and len(r0) == len(r1) == 24
    for step in range(6):
        assert sorted(one[8 * step : 8 * step + 8]) == sorted(r0[4 * step : 4 * step + 4] + r1[4 * step : 4 * step + 4])
    assert not set(r0) & set(r1)
    resumed = list(ShardedEpochSampler(50, 8, epoch=3, seed=1, info=DistInfo(0, 1), start_batch=2))
    assert resumed == one[16:]
    assert list(ShardedEpochSampler(50, 8, epoch=4, seed=1, info=DistInfo(0, 1))) != one


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    args = ["-m", "tests.core.train_toy"]
    single = subprocess.run(
        [sys.executable, *args, str(tmp_path / "one"), "20", "16", "0", "reconstruct", "0.0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *args,
            str(tmp_path / "two"),
            "20",
            "8",
            "0",
            "reconstruct",
            "0.0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("done step=20") == 2
    loss_one = [r["loss"] for r in read_metrics(tmp_path / "one")]
    loss_two = [r["loss"] for r in read_metrics(tmp_path / "two")]
    assert len(loss_one) == len(loss_two) == 20
    torch.testing.assert_close(torch.tensor(loss_two), torch.tensor(loss_one), rtol=1e-4, atol=1e-5)
    assert loss_one[-1] < loss_one[0]
    w1 = load_checkpoint(tmp_path / "one" / "model.pt")["model"]
    w2 = load_checkpoint(tmp_path / "two" / "model.pt")["model"]
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5)
    assert len(load_checkpoint(sorted((tmp_path / "two" / "checkpoints").iterdir())[-1])["rng"]) == 2
