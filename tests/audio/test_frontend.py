"""The log-mel frontend: padding never leaks into frames, streaming statistics equal a one-shot computation."""

import numpy as np
import torch

from ssl_modal.audio import LogMel, audio_collate, mfcc_mean_std, streaming_stats

from .conftest import tone

FRONT = dict(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40)


def test_frames_do_not_change_when_the_clip_is_padded():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (1234, 4000, 801)]
    frontend = LogMel(**FRONT)
    batch = audio_collate(waves)
    feats, mask = frontend(batch["wave"], batch["lengths"])
    assert mask.sum(1).tolist() == [n // 80 + 1 for n in (1234, 4000, 801)]
    for i, w in enumerate(waves):
        alone, alone_mask = frontend(*audio_collate([w]).values())
        n = int(alone_mask.sum())
        torch.testing.assert_close(feats[i, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        assert (feats[i, n:] == 0).all()


def test_streaming_stats_equal_one_shot_statistics_and_normalise():
    waves = [tone(s, freq=f) + 0.01 for s, f in ((0.3, 300), (0.7, 900), (0.2, 1500), (0.5, 2500))]
    frontend = LogMel(**FRONT)
    batches = [audio_collate(waves[:1]), audio_collate(waves[1:3]), audio_collate(waves[3:])]
    stats = streaming_stats(frontend, batches, progress=False)
    rows = []
    for w in waves:
        feats, mask = frontend.log_mel(*audio_collate([w]).values())
        rows.append(feats[0, mask[0]])
    every = torch.cat(rows).double()
    assert stats["frames"] == every.shape[0]
    np.testing.assert_allclose(stats["mean"], every.mean(0).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats["std"], every.std(0, unbiased=False).numpy(), rtol=1e-5, atol=1e-5)
    normalised = LogMel(**FRONT, mean=stats["mean"], std=stats["std"])
    batch = audio_collate(waves)
    feats, mask = normalised(batch["wave"], batch["lengths"])
    real = feats[mask].double()
    np.testing.assert_allclose(real.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(real.std(0, unbiased=False).numpy(), 1.0, atol=1e-3)


def test_frontend_stays_float32_under_bf16_autocast():
    frontend = LogMel(**FRONT)
    batch = audio_collate([tone(0.3)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = frontend(batch["wave"], batch["lengths"])
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_mfcc_baseline_features_shape_and_separation():
    low = mfcc_mean_std([tone(0.5, freq=300), tone(0.4, freq=310)], 8000, 20, 256, 80, 40)
    high = mfcc_mean_std([tone(0.5, freq=2500)], 8000, 20, 256, 80, 40)
    assert low.shape == (2, 40) and low.dtype == np.float32
    assert np.linalg.norm(low[0] - low[1]) < np.linalg.norm(low[0] - high[0])


def test_utterance_mean_norm_centres_each_clip_and_ignores_padding():
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (1500, 4000)]
    frontend = LogMel(**FRONT, utterance_mean_norm=True)
    batch = audio_collate(waves)
    feats, mask = frontend(batch["wave"], batch["lengths"])
    for i in range(2):
        real = feats[i, mask[i]]
        np.testing.assert_allclose(real.mean(0).numpy(), 0.0, atol=1e-4)
    alone, alone_mask = frontend(*audio_collate(waves[:1]).values())
    n = int(alone_mask.sum())
    torch.testing.assert_close(feats[0, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
    plain, _ = LogMel(**FRONT)(batch["wave"], batch["lengths"])
    assert not torch.allclose(plain[0, :n], feats[0, :n])
