"""Contrastive random walk: the palindrome loss against a naive loop, augmentations, and the objective."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_modal.video.model import VideoEncoder, build_video_model
from ssl_modal.video.walk import augment_clip, color_jitter, transition, walk_loss


def naive_walk_loss(nodes, temperature):
    b, t, n, _ = nodes.shape
    total = 0.0
    for k in range(1, t):
        per_k = 0.0
        for e in range(b):

            def step(x, y, e=e):
                s = [
                    [math.exp(float(nodes[e, x, i] @ nodes[e, y, j]) / temperature) for j in range(n)] for i in range(n)
                ]
                return np.array([[v / sum(row) for v in row] for row in s])

            m = np.eye(n)
            for i in range(k):
                m = m @ step(i, i + 1)
            for i in range(k, 0, -1):
                m = m @ step(i, i - 1)
            per_k += -np.mean(np.log(np.diag(m)))
        total += per_k / b
    return total / (t - 1)


def test_walk_loss_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    nodes = F.normalize(torch.randn(2, 4, 5, 3, generator=g), dim=-1)
    loss, acc = walk_loss(nodes, temperature=0.3)
    assert float(loss) == pytest.approx(naive_walk_loss(nodes, 0.3), rel=1e-4)
    assert 0 <= float(acc) <= 1


def test_walk_loss_is_low_for_distinct_static_nodes_and_high_for_identical_ones():
    distinct = torch.eye(6).expand(1, 3, 6, 6)
    same = F.normalize(torch.ones(1, 3, 6, 6), dim=-1)
    low, acc = walk_loss(distinct, 0.05)
    high, _ = walk_loss(same, 0.05)
    assert float(low) < 1e-3 and float(acc) == 1.0
    assert float(high) == pytest.approx(math.log(6), rel=1e-4)


def test_edge_dropout_keeps_rows_stochastic():
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(2, 7, 4, generator=g), dim=-1)
    p = transition(a, a, 0.1, edge_drop=0.5, generator=g)
    assert torch.allclose(p.sum(-1), torch.ones(2, 7), atol=1e-5)
    assert (p < 1e-6).any()


def test_augmentations_identity_when_off_and_seeded_otherwise():
    frames = torch.randint(0, 256, (2, 3, 16, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(0)
    same = augment_clip(frames, (16, 20), (1.0, 1.0), 0.0, 0.0, 0.0, g)
    assert same.shape == (6, 3, 16, 20)
    assert torch.allclose(same, frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255, atol=1e-4)
    a = augment_clip(frames, (8, 8), (0.3, 1.0), 0.1, 0.4, 0.2, torch.Generator().manual_seed(5))
    b = augment_clip(frames, (8, 8), (0.3, 1.0), 0.1, 0.4, 0.2, torch.Generator().manual_seed(5))
    assert a.shape == (6, 3, 8, 8) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


def test_colour_jitter_changes_colour_and_grayscale_removes_it():
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    jittered = color_jitter(x, 0.4, 0.0, torch.Generator().manual_seed(0))
    assert not torch.allclose(jittered, x, atol=1e-2)
    gray = color_jitter(x, 0.0, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])


def test_walk_objective_trains_a_lab_encoder():
    walk = {
        "weight": 1.0,
        "temperature": 0.07,
        "edge_drop": 0.1,
        "crop": [32, 32],
        "scale": [0.5, 1.0],
        "jitter": 0.1,
        "color_strength": 0.4,
        "gray_p": 0.2,
    }
    model = build_video_model({"encoder": {"widths": [8, 8, 8], "embed_dim": 8, "channels": "Lab"}, "walk": walk})
    assert isinstance(model.encoder, VideoEncoder) and list(model.objectives) == ["walk"]
    frames = torch.randint(0, 256, (2, 3, 40, 48, 3), dtype=torch.uint8)
    out = model({"frames": frames})
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and "walk/cycle_accuracy" in out
    assert model.encoder.stem[0].weight.shape[1] == 3 and model.encoder.stem[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="encoder.channels: expected 'L' or 'Lab', found 'rgb'"):
        VideoEncoder([8, 8], channels="rgb")
