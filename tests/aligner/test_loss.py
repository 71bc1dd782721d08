"""The contrastive loss against a naive loop, group-aware targets, and global negatives across ranks."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ssl_modal.aligner.loss import contrastive_loss
from ssl_modal.core.checkpoint import load_checkpoint
from ssl_modal.core.monitors import read_metrics

REPO = Path(__file__).resolve().parents[2]


def naive_loss(image, text, groups, scale):
    """Row by row: -mean over the row's positives of log softmax, both directions, averaged."""
    n = len(groups)
    total = 0.0
    for direction in range(2):
        a, b = (image, text) if direction == 0 else (text, image)
        for i in range(n):
            logits = [scale * float(a[i] @ b[j]) for j in range(n)]
            top = max(logits)
            log_z = top + math.log(sum(math.exp(v - top) for v in logits))
            positives = [j for j in range(n) if groups[j] == groups[i]]
            total += -sum(logits[j] - log_z for j in positives) / len(positives) / n
    return total / 2


def features(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, d, generator=g), dim=1), F.normalize(torch.randn(n, d, generator=g), dim=1))


def test_matches_naive_reference_with_and_without_groups():
    image, text = features()
    scale = torch.tensor(10.0)
    for groups in ([0, 1, 2, 3, 4, 5], [0, 0, 1, 2, 2, 2]):
        g = torch.tensor(groups)
        out = contrastive_loss(image, text, image, text, g, g, scale)
        assert out["loss"].item() == pytest.approx(naive_loss(image, text, groups, 10.0), rel=1e-5)


def test_captions_of_one_image_are_not_negatives():
    # Image 0 has two captions, both identical to it. Grouped, each is a positive: the loss is the entropy of the
    # uniform target (ln 2 per such row), the lowest possible. Ungrouped, caption 1 is image 0's negative.
    image = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    text = image.clone()
    scale = torch.tensor(20.0)
    grouped = contrastive_loss(image, text, image, text, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), scale)
    ungrouped = contrastive_loss(image, text, image, text, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), scale)
    assert grouped["loss"].item() == pytest.approx(2 * math.log(2) / 3, abs=1e-4)
    assert grouped["acc_i2t"] == 1.0 and grouped["acc_t2i"] == 1.0
    assert ungrouped["acc_i2t"] < 1.0


def test_batch_of_one_is_a_clear_error():
    image, text = features(n=1)
    with pytest.raises(ValueError, match="at least 2 image-text pairs per \\(global\\) batch, found 1"):
        contrastive_loss(image, text, image, text, torch.tensor([0]), torch.tensor([0]), torch.tensor(1.0))


@pytest.mark.slow
def test_torchrun_two_ranks_with_global_negatives_match_one_process(tmp_path):
    """Trainer + DDP (gloo): 2 processes x batch 4 equal 1 process x batch 8, loss and weights."""
    args = ["-m", "tests.aligner.train_tiny"]
    one = subprocess.run(
        [sys.executable, *args, str(tmp_path / "one"), "6", "8"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *args,
            str(tmp_path / "two"),
            "6",
            "4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    loss_one = [r["loss"] for r in read_metrics(tmp_path / "one") if "loss" in r]
    loss_two = [r["loss"] for r in read_metrics(tmp_path / "two") if "loss" in r]
    assert len(loss_one) == len(loss_two) == 6
    assert loss_one == pytest.approx(loss_two, rel=1e-4)
    w_one = load_checkpoint(tmp_path / "one" / "model.pt")["model"]
    w_two = load_checkpoint(tmp_path / "two" / "model.pt")["model"]
    for key in w_one:
        # AdamW divides by sqrt(v): elements with ~zero gradient turn float-rounding noise into ~1e-5 moves
        torch.testing.assert_close(w_one[key], w_two[key], rtol=1e-4, atol=1e-4)
