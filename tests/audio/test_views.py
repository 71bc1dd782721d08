"""Audio view steps: each pure function against a naive reference, each step's effect, the pipeline's order rules."""

import numpy as np
import pytest
import torch

from ssl_modal.audio.frontend import LogMel
from ssl_modal.audio.views import (
    Crop,
    Gain,
    Mixup,
    Noise,
    SpecAugment,
    Speed,
    Vtlp,
    add_noise,
    audio_views,
    crop_boxes,
    mixup,
    resized_crop,
    rms,
    spec_masks,
    vtlp,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def padded(lengths, width=None, seed=0):
    lengths = torch.tensor(lengths)
    width = width or int(lengths.max())
    wave = torch.randn(len(lengths), width, generator=gen(seed)) * 0.1
    return wave * (torch.arange(width)[None, :] < lengths[:, None]), lengths


def frontend():
    return LogMel(8000, 256, 200, 80, 40, utterance_mean_norm=True)


def test_gain_and_rms_match_the_definitions():
    wave, lengths = padded([800, 400])
    out = Gain(db=6)({"wave": wave, "lengths": lengths, "logmel": "stale"}, gen())
    assert "logmel" not in out  # a cached log-mel would no longer match
    ratio = rms(out["wave"], lengths) / rms(wave, lengths)
    assert ((ratio >= 10 ** (-6 / 20) - 1e-6) & (ratio <= 10 ** (6 / 20) + 1e-6)).all()
    want = torch.sqrt((wave[1, :400] ** 2).mean())
    assert torch.allclose(rms(wave, lengths)[1], want)


def test_mixup_matches_naive_formula_and_keeps_padding_zero():
    wave, lengths = padded([800, 500, 300], width=900)
    partner, share = torch.tensor([1, 2, 0]), torch.tensor([0.2, 0.0, 0.4])
    got = mixup(wave, lengths, partner, share)
    for b in range(3):
        n, o = int(lengths[b]), int(partner[b])
        other = wave[o] * torch.sqrt((wave[b, :n] ** 2).mean()) / torch.sqrt((wave[o, : int(lengths[o])] ** 2).mean())
        want = (1 - share[b]) * wave[b] + share[b] * other
        assert torch.allclose(got[b, :n], want[:n], atol=1e-6)
        assert (got[b, n:] == 0).all()
    assert torch.allclose(got[1], wave[1])  # share 0: unchanged


def test_mixup_step_never_mixes_a_clip_with_itself():
    wave, lengths = padded([800] * 2)  # self-mixing would return the clip unchanged
    for seed in range(5):
        out = Mixup(ratio=0.4)({"wave": wave.clone(), "lengths": lengths}, gen(seed))["wave"]
        assert not torch.allclose(out[0], wave[0], atol=1e-4) and not torch.allclose(out[1], wave[1], atol=1e-4)


def test_noise_reaches_the_requested_snr_on_real_samples_only():
    wave, lengths = padded([8000, 4000], width=8000)
    noisy = add_noise(wave, lengths, torch.tensor([20.0, 20.0]), gen())
    noise = noisy - wave
    snr = 20 * torch.log10(rms(wave, lengths) / rms(noise, lengths))
    assert torch.allclose(snr, torch.tensor([20.0, 20.0]), atol=0.5)
    assert (noise[1, 4000:] == 0).all()


def test_speed_changes_length_by_the_factor_and_pads_with_zeros():
    wave, lengths = padded([8000, 4000])
    out = Speed(factors=[1.25])({"wave": wave, "lengths": lengths}, gen())
    assert out["lengths"].tolist() == [6400, 3200]
    assert out["wave"].shape[1] == 6400 and (out["wave"][1, 3200:] == 0).all()
    same = Speed(factors=[1.0])({"wave": wave, "lengths": lengths}, gen())
    assert torch.allclose(same["wave"], wave, atol=1e-5)


def test_vtlp_matches_naive_interpolation_and_identity():
    x = torch.randn(2, 5, 8, generator=gen())
    assert torch.allclose(vtlp(x, torch.ones(2)), x)
    got = vtlp(x, torch.tensor([1.2, 0.8]))
    for b, alpha in enumerate([1.2, 0.8]):
        for f in range(8):
            src = min(max(f / alpha, 0.0), 7.0)
            lo, w = int(np.floor(src)), src - np.floor(src)
            hi = min(lo + 1, 7)
            assert torch.allclose(got[b, :, f], x[b, :, lo] * (1 - w) + x[b, :, hi] * w, atol=1e-5)


def test_resized_crop_identity_box_returns_the_clip():
    x = torch.randn(2, 30, 40, generator=gen())
    frames = torch.tensor([30, 20])
    x[1, 20:] = 0
    boxes = torch.tensor([[0.0, 40.0, 0.0, 30.0], [0.0, 40.0, 0.0, 20.0]])
    out = resized_crop(x, frames, boxes)
    assert torch.allclose(out[0], x[0], atol=1e-5)
    assert torch.allclose(out[1, :20], x[1, :20], atol=1e-5)


def test_resized_crop_of_a_half_stretches_it():
    x = torch.arange(20.0).repeat(8, 1).T[None]  # (1, T=20, F=8): value = frame index
    out = resized_crop(x, torch.tensor([20]), torch.tensor([[0.0, 8.0, 0.0, 10.0]]))  # first half in time
    centres = (torch.arange(20.0) + 0.5) / 2 - 0.5  # output frame t reads input frame (t+0.5)/2-0.5
    assert torch.allclose(out[0, 1:-1, 3], centres[1:-1], atol=1e-4)


def test_crop_boxes_stay_within_the_canvas_and_scales():
    frames = torch.full((500,), 60)
    boxes = crop_boxes(frames, 40, [1.0, 1.5], (0.6, 1.5), (0.6, 1.5), gen())
    i, h, j, w = boxes.unbind(1)
    assert (h >= 0.6 * 40 - 1e-4).all() and (h <= 40 + 1e-4).all()  # capped by the canvas height
    assert (w >= 0.6 * 60 - 1e-4).all() and (w <= 1.5 * 60 + 1e-4).all()
    assert (i >= -1e-4).all() and (i + h <= 40 + 1e-4).all()
    assert (j >= -15 - 1e-4).all() and (j + w <= 75 + 1e-4).all()  # canvas centred: [-15, 75)
    assert w.std() > 5 and j.std() > 3  # they vary


def test_spec_masks_match_their_counts_and_stay_inside_the_clip():
    lengths = torch.tensor([50, 20])
    m = spec_masks((2, 50, 40), lengths, 2, 10, 2, 6, gen())
    time_only = m.all(2)  # frames masked across every bin
    assert time_only[1, 20:].sum() == 0
    assert time_only.sum(1).max() <= 20
    bands = m.all(1)  # bins masked in every frame
    assert (bands.sum(1) <= 12).all() and bands.sum() > 0


def test_pipeline_views_differ_keep_masks_and_are_reproducible():
    pytest.importorskip("ssl_modal.core.views")
    wave, lengths = padded([8000, 6000, 3000, 1200])
    fe = frontend()
    specs = [
        {"name": "gain"},
        {"name": "mixup", "p": 1.0},
        {"name": "noise"},
        {"name": "vtlp"},
        {"name": "crop"},
        {"name": "specaugment"},
    ]
    views = audio_views(specs, fe, 8000)
    a, b = views({"wave": wave, "lengths": lengths}, gen(1))
    xa, ma = a["logmel"]
    xb, mb = b["logmel"]
    assert torch.equal(ma, mb) and torch.equal(ma.sum(1), lengths // 80 + 1)
    assert not torch.allclose(xa, xb)
    assert (xa[~ma] == 0).all() and torch.isfinite(xa).all()
    a2, _ = views({"wave": wave, "lengths": lengths}, gen(1))
    assert torch.equal(a2["logmel"][0], xa)


def test_pipeline_rejects_a_waveform_step_after_a_logmel_step_and_unknown_names():
    pytest.importorskip("ssl_modal.core.views")
    from ssl_modal.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"views\[1\] \(gain\): a waveform step after the log-mel step 'crop'"):
        audio_views([{"name": "crop"}, {"name": "gain"}], frontend(), 8000)
    with pytest.raises(ConfigError, match="did you mean 'mixup'"):
        audio_views([{"name": "mixpu"}], frontend(), 8000)
    with pytest.raises(ConfigError, match="sample_rate comes from frontend.sample_rate"):
        audio_views([{"name": "speed", "sample_rate": 16000}], frontend(), 8000)
    with pytest.raises(ConfigError, match="snr_db"):
        audio_views([{"name": "noise", "snr_db": [40, 10]}], frontend(), 8000)


def test_steps_describe_themselves():
    assert "ratio=0.3" in repr(Mixup(0.3)) and "time_width=4" in repr(SpecAugment(time_width=4))
    assert "alpha" in repr(Vtlp()) and "virtual_scale" in repr(Crop()) and "snr_db" in repr(Noise())
