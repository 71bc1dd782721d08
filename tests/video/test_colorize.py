"""Colorization pure functions against naive per-element reference implementations written here."""

import math

import numpy as np
import pytest
import torch

from ssl_modal.video.colorize import (
    colorization_loss,
    fit_color_centres,
    frames_to_lab,
    pointer,
    quantize_ab,
    rgb_to_lab,
)


def naive_lab(r, g, b):
    """CIE Lab of one sRGB colour in [0, 1] (D65), written out per the standard formulas."""

    def lin(c):
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = lin(r), lin(g), lin(b)
    x = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.95047
    y = (0.212671 * r + 0.715160 * g + 0.072169 * b) / 1.0
    z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.08883
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def test_rgb_to_lab_matches_naive_and_known_values():
    rgb = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    lab = rgb_to_lab(rgb)
    for n, i, j in [(0, 0, 0), (1, 3, 4), (0, 2, 1)]:
        expected = naive_lab(*rgb[n, :, i, j].tolist())
        assert lab[n, :, i, j].tolist() == pytest.approx(expected, abs=1e-3)
    known = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]).T.reshape(3, 1, 2)  # white, red
    out = rgb_to_lab(known)
    assert out[:, 0, 0].tolist() == pytest.approx([100.0, 0.0, 0.0], abs=0.05)
    assert out[:, 0, 1].tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.05)  # sRGB red, D65


def test_frames_to_lab_takes_uint8_channels_last():
    frames = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8)
    lab = frames_to_lab(frames)
    assert lab.shape == (2, 3, 4, 5)
    assert torch.allclose(lab, rgb_to_lab(frames.permute(0, 3, 1, 2).float() / 255))


def test_quantize_ab_is_nearest_centre():
    centres = torch.tensor([[0.0, 0.0], [30.0, -20.0], [-40.0, 50.0]])
    ab = torch.randn(2, 2, 3, 4) * 40
    idx = quantize_ab(ab, centres)
    assert idx.shape == (2, 3, 4)
    for n in range(2):
        for i in range(3):
            for j in range(4):
                d = [float(((ab[n, :, i, j] - c) ** 2).sum()) for c in centres]
                assert idx[n, i, j] == int(np.argmin(d))


def test_fit_color_centres_recovers_clusters():
    rng = np.random.default_rng(0)
    truth = np.array([[-50, 10], [0, 0], [40, 60], [20, -70]], dtype=float)
    ab = np.concatenate([c + rng.normal(0, 1.0, (500, 2)) for c in truth])
    centres = fit_color_centres(ab, k=4)
    assert centres.shape == (4, 2) and centres.dtype == np.float32
    for c in truth:
        assert np.min(np.linalg.norm(centres - c, axis=1)) < 0.5
    with pytest.raises(ValueError, match="needs at least 16 ab values, found 3"):
        fit_color_centres(ab[:3], k=16)


def test_pointer_matches_naive_softmax():
    g = torch.Generator().manual_seed(1)
    t, r = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    p = pointer(t, r, temperature=0.5)
    for b in range(2):
        for i in range(3):
            s = [math.exp(float(t[b, i] @ r[b, j]) / 0.5) for j in range(5)]
            assert p[b, i].tolist() == pytest.approx([x / sum(s) for x in s], rel=1e-5)


def test_colorization_loss_matches_naive_loop():
    g = torch.Generator().manual_seed(2)
    k = 4
    t, r = torch.randn(2, 3, 6, generator=g), torch.randn(2, 7, 6, generator=g)
    ref_c = torch.randint(0, k, (2, 7), generator=g)
    tgt_c = torch.randint(0, k, (2, 3), generator=g)
    loss, acc = colorization_loss(t, r, ref_c, tgt_c, k, temperature=1.0)
    total, correct = 0.0, 0
    for b in range(2):
        for i in range(3):
            e = [math.exp(float(t[b, i] @ r[b, j])) for j in range(7)]
            probs = [sum(e[j] for j in range(7) if ref_c[b, j] == c) / sum(e) for c in range(k)]
            total += -math.log(max(probs[int(tgt_c[b, i])], 1e-8))
            correct += int(np.argmax(probs) == int(tgt_c[b, i]))
    assert float(loss) == pytest.approx(total / 6, rel=1e-5)
    assert float(acc) == pytest.approx(correct / 6)


def test_colorization_loss_is_low_when_features_match_colours():
    # target position i has the same feature as reference position i, which has the target's colour
    feats = torch.eye(5).unsqueeze(0) * 10
    colors = torch.tensor([[0, 1, 2, 3, 0]])
    loss, acc = colorization_loss(feats, feats, colors, colors, 4)
    assert float(acc) == 1.0 and float(loss) < 1e-3
    shuffled, _ = colorization_loss(feats, feats, colors, colors.roll(1, 1), 4)
    assert float(shuffled) > 5


def test_uint8_lab_table_matches_the_float_formula():
    from ssl_modal.video.colorize import rgb_to_lab

    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16).clone()
    x[0, 1] = x[0, 1].flip(-1)
    assert torch.allclose(rgb_to_lab(x), rgb_to_lab(x.float() / 255.0), atol=1e-4)
