"""Label propagation: one step against a naive loop, locality, and tracking a moving square."""
import math

import numpy as np
import pytest
import torch

from ssl_modal.video.davis import region_j
from ssl_modal.video.propagate import (copy_first_frame, lab_patch_features, local_mask, propagate,
                                       propagate_step)
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
        expected = sum(wi * lab for wi, (_, lab) in zip(w, top)) / sum(w)
        assert out[i].tolist() == pytest.approx(expected.tolist(), rel=1e-4)


def test_lab_features_grid():
    frames = torch.as_tensor(synthetic_frames(2, 50, 61))
    assert lab_patch_features(frames).shape == (2, 3 * 64, 7, 8)


def test_propagation_tracks_a_moving_square_better_than_copying():
    frames, masks = synthetic_frames(), square_masks()
    preds, fps = propagate(lab_patch_features, frames, masks[0], context=3, topk=5, radius=3, temperature=0.05)
    assert preds.shape == masks.shape and fps > 0
    assert np.array_equal(preds[0], masks[0])
    tracked = np.mean([region_j(p, g) for p, g in zip(preds[1:], masks[1:])])
    copied = np.mean([region_j(p, g) for p, g in zip(copy_first_frame(frames, masks[0])[1:], masks[1:])])
    assert tracked > 0.6 and tracked > copied + 0.2, (tracked, copied)


def test_first_mask_of_another_size():
    frames, masks = synthetic_frames(3), square_masks(3)
    with pytest.raises(ValueError, match=r"first mask is 32x24 \(WxH\) but the frames are 64x48"):
        propagate(lab_patch_features, frames, masks[0, :24, :32])
