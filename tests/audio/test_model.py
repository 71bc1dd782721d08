"""The audio encoder: padding invariance, collate errors, training with the shared Trainer, load_model."""

import numpy as np
import pytest
import torch

from ssl_modal import Trainer, encode, load_model
from ssl_modal.audio import audio_collate, build_audio_model
from tests.train_configs import quiet_config

from .conftest import tiny_config


def clips(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(int(k)) * 0.1).astype(np.float32) for k in rng.integers(900, 6000, n)]


def test_padding_a_clip_does_not_change_its_embedding():
    model = build_audio_model(tiny_config()).eval()
    a, b, c = clips(3)
    alone = model.embed(audio_collate([a]))
    padded = model.embed(audio_collate([a, np.zeros(len(a) + 3000, np.float32) + 0.05]))
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)
    out = model.encoder(audio_collate([a, b, c]))
    assert out.tokens.shape[:2] == out.mask.shape and (out.tokens[~out.mask] == 0).all()
    assert out.mask.sum(1).tolist() == [((len(w) // 80 + 1 + 1) // 2 + 1) // 2 for w in (a, b, c)]


def test_collate_messages():
    with pytest.raises(KeyError, match="audio item 1 has no 'wave'"):
        audio_collate([{"wave": np.zeros(5, np.float32)}, {"path": "x.wav"}])
    with pytest.raises(ValueError, match=r"audio item 0: expected mono samples of shape \(n,\), found shape \(4, 2\)"):
        audio_collate([np.zeros((4, 2), np.float32)])
    with pytest.raises(ValueError, match="audio item 0: has no samples"):
        audio_collate([np.zeros(0, np.float32)])
    batch = audio_collate([np.ones(3, np.float32), torch.ones(5)])
    assert batch["wave"].shape == (2, 5) and batch["lengths"].tolist() == [3, 5] and batch["wave"][0, 3:].eq(0).all()


def test_weights_choose_objectives_and_reject_typos():
    assert set(build_audio_model(tiny_config(masked_frames=1.0)).objectives) == {"masked_frames"}
    assert set(build_audio_model(tiny_config()).objectives) == {"masked_frames", "time_shift"}
    with pytest.raises(ValueError, match=r"weights: unknown objective\(s\) \['time_shfit'\]"):
        build_audio_model(tiny_config(time_shfit=1.0))
    with pytest.raises(ValueError, match="every objective has weight 0"):
        build_audio_model(tiny_config(masked_frames=0.0, time_shift=0.0))


def test_training_lowers_the_loss_and_load_model_rebuilds_from_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg["stats"] = {"mean": [-5.0] * 40, "std": [2.0] * 40}  # fitted state travels in the config
    model = build_audio_model(cfg)
    t = np.arange(4000) / 8000
    data = [{"wave": (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t * (1 + t))).astype(np.float32)} for i in range(32)]
    result = Trainer(
        quiet_config(
            tmp_path,
            max_steps=40,
            batch_size=8,
            learning_rate=3e-3,
            warmup_steps=5,
            log_every=5,
        )
    ).fit(model, data, audio_collate)
    first, last = result.history[0], result.history[-1]
    assert last["masked_frames/loss"] < 0.8 * first["masked_frames/loss"]
    loaded = load_model(tmp_path)
    assert loaded.encoder.frontend.mean[0].item() == -5.0 and loaded.encoder.frontend.std[0].item() == 2.0
    np.testing.assert_allclose(encode(loaded, data), encode(model.eval(), data), atol=1e-5)
