"""Masked-frame and time-shift corruptions: pure functions against naive loops, draws against their rates."""

import numpy as np
import pytest
import torch

from ssl_modal.audio import build_audio_model
from ssl_modal.audio.model import audio_collate
from ssl_modal.audio.objectives import (
    KEEP,
    RANDOM,
    ZERO,
    apply_frame_corruption,
    draw_crop_starts,
    draw_frame_actions,
    draw_freq_bands,
    draw_span_starts,
    masked_l1,
    spans_to_mask,
    take_crops,
)

from .conftest import tiny_config


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_spans_to_mask_matches_naive_loop():
    g = gen()
    starts = torch.rand(4, 30, generator=g) < 0.1
    lengths = torch.tensor([30, 20, 7, 0])
    got = spans_to_mask(starts, 5, lengths)
    want = torch.zeros(4, 30, dtype=torch.bool)
    for b in range(4):
        for t in range(30):
            if starts[b, t]:
                for j in range(5):
                    if t + j < lengths[b]:
                        want[b, t + j] = True
    assert torch.equal(got, want)


def test_span_starts_count_range_and_masked_fraction():
    lengths = torch.tensor([400] * 200 + [50] * 200)
    starts = draw_span_starts(lengths, 400, 0.15, 7, gen())
    n = starts.sum(1).float()
    assert abs(n[:200].mean().item() - 0.15 * 400 / 7) < 0.3  # random rounding keeps the expectation
    assert abs(n[200:].mean().item() - 0.15 * 50 / 7) < 0.2
    assert not starts[200:, 50 - 7 + 1 :].any()  # a span never starts where it would run past the clip
    mask = spans_to_mask(starts, 7, lengths)
    frac = mask[:200].float().mean().item()
    assert 0.11 < frac < 0.15  # ~15 % minus overlaps between spans


def test_span_starts_short_and_empty_clips():
    starts = draw_span_starts(torch.tensor([3, 0, 10]), 10, 0.15, 7, gen())
    assert starts[0].sum() == 1 and starts[0, 0]  # a clip shorter than a span gets one span from frame 0
    assert starts[1].sum() == 0
    assert starts[2].sum() == 1 and starts[2, :4].any()
    with pytest.raises(ValueError, match="fraction must be in"):
        draw_span_starts(torch.tensor([5]), 5, 1.5, 7, gen())


def test_frame_actions_are_80_10_10_and_sources_are_real_frames():
    lengths = torch.tensor([37] * 1000)
    action, source = draw_frame_actions((1000, 50), lengths, 0.8, 0.1, gen())
    rates = [(action == a).float().mean().item() for a in (ZERO, RANDOM, KEEP)]
    assert abs(rates[0] - 0.8) < 0.01 and abs(rates[1] - 0.1) < 0.01 and abs(rates[2] - 0.1) < 0.01
    assert source.min() >= 0 and source.max() == 36
    with pytest.raises(ValueError, match="sum to <= 1"):
        draw_frame_actions((2, 3), lengths[:2], 0.8, 0.3, gen())


def test_apply_frame_corruption_matches_naive_loop():
    g = gen(1)
    b, t, f = 3, 12, 5
    x = torch.randn(b, t, f, generator=g)
    frame_mask = torch.arange(t)[None, :] < torch.tensor([12, 9, 4])[:, None]
    time_mask = (torch.rand(b, t, generator=g) < 0.5) & frame_mask
    action = torch.randint(3, (b, t), generator=g)
    source = torch.randint(4, (b, t), generator=g)
    freq = torch.zeros(b, f, dtype=torch.bool)
    freq[1, 2:4] = True
    got = apply_frame_corruption(x, time_mask, action, source, freq, frame_mask)
    want = x.clone()
    for i in range(b):
        for j in range(t):
            if time_mask[i, j] and action[i, j] == ZERO:
                want[i, j] = 0
            elif time_mask[i, j] and action[i, j] == RANDOM:
                want[i, j] = x[i, source[i, j]]
            for k in range(f):
                if freq[i, k] and frame_mask[i, j]:
                    want[i, j, k] = 0
    assert torch.equal(got, want)
    assert not torch.equal(got, x) and x.isfinite().all()  # input untouched, output corrupted


def test_masked_l1_matches_naive_and_is_per_masked_position():
    g = gen(2)
    pred, target = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 3, generator=g)
    mask = torch.zeros(2, 6, 1, dtype=torch.bool)
    mask[0, 1], mask[1, 4] = True, True
    total, count = 0.0, 0
    for i in range(2):
        for j in range(6):
            if mask[i, j, 0]:
                for k in range(3):
                    total += abs(pred[i, j, k].item() - target[i, j, k].item())
                    count += 1
    assert masked_l1(pred, target, mask).item() == pytest.approx(total / count, rel=1e-6)
    # unmasked positions do not matter
    pred2 = pred.clone()
    pred2[0, 0] += 100
    assert masked_l1(pred2, target, mask).item() == pytest.approx(total / count, rel=1e-6)
    assert masked_l1(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_freq_bands_are_contiguous_and_bounded():
    bands = draw_freq_bands(500, 40, 0.5, 8, gen())
    on = bands.any(1)
    assert 0.4 < on.float().mean().item() < 0.6
    widths = bands.sum(1)[on]
    assert widths.min() >= 1 and widths.max() <= 8
    for row in bands[on]:
        idx = torch.nonzero(row).flatten()
        assert (idx[-1] - idx[0] + 1).item() == len(idx)
    assert not draw_freq_bands(4, 40, 0.0, 8, gen()).any()


def test_crop_starts_keep_both_crops_inside_long_clips():
    lengths = torch.full((2000,), 40)
    shifts = torch.tensor([-8, -4, 0, 4, 8]).repeat(400)
    a = draw_crop_starts(lengths, shifts, 16, gen())
    assert (a >= 0).all() and (a + shifts >= 0).all()
    assert (a + 16 <= 40).all() and (a + shifts + 16 <= 40).all()
    assert a[shifts == 0].min() == 0 and a[shifts == 0].max() == 24  # the whole valid range is used
    short = draw_crop_starts(torch.tensor([10, 10]), torch.tensor([-8, 8]), 16, gen())
    assert short.tolist() == [8, 0]  # earliest start with both crops starting inside the clip


def test_take_crops_matches_naive_loop():
    g = gen(3)
    x = torch.randn(3, 10, 2, generator=g)
    frame_mask = torch.arange(10)[None, :] < torch.tensor([10, 6, 3])[:, None]
    x = x * frame_mask[..., None]
    starts = torch.tensor([2, 4, 1])
    crops, mask = take_crops(x, frame_mask, starts, 5)
    for b in range(3):
        for j in range(5):
            t = starts[b] + j
            real = t < 10 and frame_mask[b, t]
            assert mask[b, j] == real
            assert torch.equal(crops[b, j], x[b, t] if real else torch.zeros(2))


def _batch(lengths):
    rng = np.random.default_rng(0)
    return audio_collate([rng.standard_normal(n).astype(np.float32) * 0.1 for n in lengths])


def test_time_shift_short_clips_skip_counts_and_pad_trains():
    # 80 samples per frame: 800 samples = 11 frames < 16 + 8 needed; 4000 samples = 51 frames
    lengths = [800, 4000, 900, 4000]
    for policy, skipped in (("skip", 2.0), ("pad", 0.0)):
        cfg = tiny_config(time_shift=1.0)
        cfg["time_shift"]["short_clips"] = policy
        model = build_audio_model(cfg)
        out = model(_batch(lengths))
        assert out["time_shift/skipped"].item() == skipped
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
    cfg = tiny_config(time_shift=1.0)
    cfg["time_shift"]["short_clips"] = "skip"
    out = build_audio_model(cfg)(_batch([800, 900]))  # nothing usable: zero loss, still a graph
    assert out["loss"].item() == 0.0 and out["time_shift/skipped"].item() == 2.0
    out["loss"].backward()
    cfg["time_shift"]["short_clips"] = "drop"
    with pytest.raises(ValueError, match="time_shift.short_clips: expected 'pad' or 'skip', found 'drop'"):
        build_audio_model(cfg)


def test_masked_frames_loss_only_counts_masked_positions():
    model = build_audio_model(tiny_config(masked_frames=1.0))
    batch = _batch([4000, 2500])
    out = model(batch)
    assert set(out) == {"loss", "masked_frames/loss", "masked_frames/masked_fraction"}
    assert 0.05 < out["masked_frames/masked_fraction"].item() < 0.35
    # the objective reconstructs the clean features: a perfect predictor on masked frames gives zero loss
    x, frame_mask = model.encoder.features(batch)
    assert masked_l1(x, x, frame_mask[..., None]).item() == 0.0
