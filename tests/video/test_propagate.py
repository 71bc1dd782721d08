"""Label propagation: one step against a naive loop, locality, and tracking a moving square."""

import math

import numpy as np
import pytest
import torch

from ssl_modal.core.config import load_config
from ssl_modal.video.config import VideoConfig
from ssl_modal.video.davis import region_j
from ssl_modal.video.propagate import (
    LocalGrid,
    copy_first_frame,
    encoder_features,
    lab_patch_features,
    lab_pooled_features,
    local_mask,
    mix_colour,
    propagate,
    propagate_maps,
    propagate_step,
)
from tests.video.conftest import square_masks, synthetic_frames


def test_local_mask_hand_computed():
    m = local_mask(2, 3, radius=1)
    # cell (0,0) reaches itself, (0,1) and (1,0); not (1,1) at distance sqrt(2) nor (0,2) at 2
    assert m[0].tolist() == [True, True, False, True, False, False]
    assert local_mask(2, 3, radius=0).all()


def test_propagate_step_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    n, c, d, k = 6, 2, 5, 3
    target = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    context = torch.nn.functional.normalize(torch.randn(c, n, d, generator=g), dim=1)
    labels = torch.softmax(torch.randn(c, n, 2, generator=g), -1)
    allowed = local_mask(2, 3, radius=1)
    out = propagate_step(target, context, labels, topk=k, temperature=0.07, allowed=allowed)
    for i in range(n):
        cands = [(float(target[i] @ context[f, j]), labels[f, j]) for f in range(c) for j in range(n) if allowed[i, j]]
        cands.sort(key=lambda x: -x[0])
        top = cands[:k]
        w = [math.exp(s / 0.07) for s, _ in top]
        expected = sum(wi * lab for wi, (_, lab) in zip(w, top, strict=True)) / sum(w)
        assert out[i].tolist() == pytest.approx(expected.tolist(), rel=1e-4)


def test_lab_features_grid():
    frames = torch.as_tensor(synthetic_frames(2, 50, 61))
    assert lab_patch_features(frames).shape == (2, 3 * 64, 7, 8)


def test_propagation_tracks_a_moving_square_better_than_copying():
    frames, masks = synthetic_frames(), square_masks()
    preds, fps = propagate(lab_patch_features, frames, masks[0], context=3, topk=5, radius=3, temperature=0.05)
    assert preds.shape == masks.shape and fps > 0
    assert np.array_equal(preds[0], masks[0])
    tracked = np.mean([region_j(p, g) for p, g in zip(preds[1:], masks[1:], strict=True)])
    copied = np.mean([region_j(p, g) for p, g in zip(copy_first_frame(frames, masks[0])[1:], masks[1:], strict=True)])
    assert tracked > 0.6 and tracked > copied + 0.2, (tracked, copied)


def test_first_mask_of_another_size():
    frames, masks = synthetic_frames(3), square_masks(3)
    with pytest.raises(ValueError, match=r"first mask is 32x24 \(WxH\) but the frames are 64x48"):
        propagate(lab_patch_features, frames, masks[0, :24, :32])


def dense_maps(feats, first, context, topk, radius, temperature):
    """Reference: the dense masked affinity of `propagate_step`, frame by frame."""
    feats = torch.nn.functional.normalize(feats, dim=1)
    t, d, h, w = feats.shape
    flat = feats.flatten(2).transpose(1, 2)
    labels = [first.flatten(1).T]
    allowed = local_mask(h, w, radius)
    for i in range(1, t):
        ctx = [0] + list(range(max(1, i - context), i))
        labels.append(
            propagate_step(flat[i], flat[ctx], torch.stack([labels[j] for j in ctx]), topk, temperature, allowed)
        )
    return torch.stack(labels).transpose(1, 2).reshape(t, -1, h, w)


@pytest.mark.parametrize("h,w,radius,block", [(7, 11, 3, None), (9, 13, 2.5, 3), (6, 10, 4, 5), (5, 8, 0, None)])
def test_local_propagation_matches_dense_masked_affinity(h, w, radius, block):
    g = torch.Generator().manual_seed(h * w)
    feats = torch.randn(6, 5, h, w, generator=g)
    first = torch.softmax(torch.randn(3, h, w, generator=g), 0)
    got = propagate_maps(feats, first, context=2, topk=4, radius=radius, temperature=0.1, block=block)
    want = dense_maps(feats, first, context=2, topk=4, radius=radius, temperature=0.1)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_bfloat16_similarities_stay_close_to_float32():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 32, 9, 12, generator=g)
    first = torch.softmax(torch.randn(2, 9, 12, generator=g), 0)
    want = propagate_maps(feats, first, context=3, topk=5, radius=3, temperature=0.1)
    got = propagate_maps(feats, first, context=3, topk=5, radius=3, temperature=0.1, dtype=torch.bfloat16)
    assert got.dtype == torch.float32 and torch.allclose(got.sum(1), torch.ones(6, 9, 12), atol=1e-5)
    assert (got - want).abs().mean() < 0.02 and not torch.equal(got, want)
    with pytest.raises(
        ValueError, match=r"propagation.precision: expected one of \['bfloat16', 'float32'\], found 'fp8'"
    ):
        load_config(VideoConfig, None, ["propagation.precision=fp8"])


def test_mix_colour_gives_the_weighted_sum_of_cosines():
    g = torch.Generator().manual_seed(1)
    feats, lab = torch.randn(2, 16, 5, 6, generator=g), torch.randn(2, 3, 10, 12, generator=g)
    mixed = mix_colour(feats, lab, 0.3)
    assert mixed.shape == (2, 19, 5, 6) and torch.equal(mix_colour(feats, lab, 0.0), feats)

    def cos(x):
        x = torch.nn.functional.normalize(x, dim=1)
        return (x[0] * x[1]).sum(0)

    pooled = torch.nn.functional.adaptive_avg_pool2d(lab, (5, 6))
    assert torch.allclose(cos(mixed), 0.7 * cos(feats) + 0.3 * cos(pooled), atol=1e-5)


def test_local_grid_tiles_round_trip():
    grid = LocalGrid(7, 10, radius=3, block=3)
    x = torch.randn(2, 7, 10)
    assert torch.equal(grid.untile(grid.tiles(x)), x)
    assert grid.bias.shape == (3 * 4, 9, 81)


def test_pooled_lab_and_encoder_stride():
    frames = torch.as_tensor(synthetic_frames(2, 48, 64))
    assert lab_pooled_features(4)(frames).shape == (2, 3, 12, 16)
    from ssl_modal.video.model import VideoEncoder

    enc = VideoEncoder([8, 8, 8], 1, 6)
    assert encoder_features(enc)(frames).shape == (2, 6, 6, 8)
    assert encoder_features(enc, stride=4)(frames).shape == (2, 6, 12, 16)
