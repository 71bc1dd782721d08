"""The BYOL-A-style CNN encoder and the pooling choices: naive references, padding invariance, MFCC segments."""

import numpy as np
import pytest
import torch

from ssl_modal.audio import audio_collate, build_audio_model, mfcc_mean_std
from ssl_modal.audio.cnn import pool

from .conftest import tiny_config


def test_pool_modes_match_naive_loops():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 7, 4, generator=g)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 2])[:, None]
    mean = pool(tokens, mask, "mean")
    both = pool(tokens, mask, "mean+max")
    seg = pool(tokens, mask, "segments", 3)
    for b, n in enumerate([7, 4, 2]):
        real = tokens[b, :n]
        assert torch.allclose(mean[b], real.mean(0), atol=1e-6)
        assert torch.allclose(both[b], real.mean(0) + real.max(0).values, atol=1e-6)
        parts = []
        for s in range(3):
            idx = [t for t in range(n) if t * 3 // n == s]
            parts.append(real[idx].mean(0) if idx else real.mean(0))  # empty part: the clip mean
        assert torch.allclose(seg[b], torch.cat(parts), atol=1e-6)
    with pytest.raises(ValueError, match="encoder.pooling: expected one of"):
        pool(tokens, mask, "attention")


def cnn_config(pooling):
    cfg = tiny_config()
    cfg["encoder"].update(kind="cnn", dim=32, channels=8, pooling=pooling, dropout=0.0)
    return cfg


@pytest.mark.parametrize("pooling", ["mean+max", "segments"])
def test_cnn_embedding_ignores_padding_and_orders_time(pooling):
    model = build_audio_model(cnn_config(pooling)).eval()
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(4000) * 0.1).astype(np.float32)
    alone = model.embed(audio_collate([a]))
    padded = model.embed(audio_collate([a, np.zeros(9000, np.float32) + 0.05]))
    torch.testing.assert_close(alone[0], padded[0], atol=1e-5, rtol=1e-5)
    assert alone.shape[1] == (96 if pooling == "segments" else 32)
    out = model.encoder(audio_collate([a]))
    assert out.mask.sum().item() == ((4000 // 80 + 1) // 2 // 2) // 2


def test_stacked_tokens_carry_the_conv_map_and_train_with_every_objective():
    cfg = cnn_config("segments")
    cfg["encoder"]["stack"] = True
    cfg["weights"] = {"joint": 1.0, "masked_frames": 1.0, "time_shift": 0.5}
    cfg["joint"] = {"method": "byol", "hidden": 32, "dim": 16}
    cfg["views"] = [{"name": "crop"}]
    model = build_audio_model(cfg)
    rng = np.random.default_rng(0)
    batch = audio_collate([(rng.standard_normal(int(n)) * 0.1).astype(np.float32) for n in (6000, 3000)])
    out = model.encoder(dict(batch))
    assert out.tokens.shape[-1] == 8 * (40 // 8) + 32 and out.pooled.shape[-1] == 3 * (40 + 32)
    loss = model(dict(batch))["loss"]
    assert torch.isfinite(loss)
    loss.backward()


def test_unknown_encoder_kind_is_named():
    cfg = tiny_config()
    cfg["encoder"]["kind"] = "rnn"
    with pytest.raises(ValueError, match="encoder.kind: expected 'transformer' or 'cnn', found 'rnn'"):
        build_audio_model(cfg)


def test_mfcc_segments_are_per_part_mean_and_std():
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(2400) * 0.1).astype(np.float32)
    whole = mfcc_mean_std([wave], 8000, 13, 256, 80, 40)
    three = mfcc_mean_std([wave], 8000, 13, 256, 80, 40, segments=3)
    assert whole.shape == (1, 26) and three.shape == (1, 78)
    import torchaudio

    m = torchaudio.transforms.MFCC(8000, 13, melkwargs={"n_fft": 256, "hop_length": 80, "n_mels": 40})(
        torch.as_tensor(wave)
    ).numpy()  # 31 frames -> parts of 10, 11, 10
    first = m[:, :10]
    np.testing.assert_allclose(three[0, :13], first.mean(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(three[0, 13:26], first.std(1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="mfcc segments must be >= 1"):
        mfcc_mean_std([wave], 8000, 13, 256, 80, 40, segments=0)


def test_joint_objective_trains_with_the_trainer_and_reloads(tmp_path):
    from ssl_modal import Trainer, encode, load_model
    from tests.train_configs import quiet_config

    cfg = cnn_config("segments")
    cfg["weights"] = {"joint": 1.0}
    cfg["joint"] = {"method": "byol", "hidden": 32, "dim": 16, "ema": 0.9}
    cfg["views"] = [
        {"name": "gain"},
        {"name": "speed", "factors": [0.9, 1.1]},
        {"name": "crop"},
        {"name": "specaugment"},
    ]
    torch.manual_seed(0)
    model = build_audio_model(cfg)
    assert set(model.objectives) == {"joint"}
    target_before = [p.clone() for p in model.objectives["joint"].target_encoder.parameters()]
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal(int(n)) * 0.1).astype(np.float32) for n in rng.integers(1500, 6000, 24)]
    result = Trainer(
        quiet_config(
            tmp_path,
            max_steps=4,
            batch_size=8,
            learning_rate=1e-3,
            warmup_steps=1,
            log_every=1,
        )
    ).fit(model, data, audio_collate)
    assert all(np.isfinite(r["joint/loss"]) for r in result.history)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(target_before, model.objectives["joint"].target_encoder.parameters(), strict=True)
    ]
    assert any(moved)  # the EMA target followed the online encoder
    loaded = load_model(tmp_path)
    np.testing.assert_allclose(encode(loaded, data), encode(model.eval(), data), atol=1e-5)


def test_time_shift_head_takes_the_pooled_size():
    cfg = cnn_config("segments")
    cfg["weights"] = {"time_shift": 1.0}
    model = build_audio_model(cfg)
    rng = np.random.default_rng(0)
    out = model(audio_collate([(rng.standard_normal(6000) * 0.1).astype(np.float32) for _ in range(4)]))
    assert torch.isfinite(out["loss"])


def test_masked_frames_with_the_cnn_scores_only_the_frames_its_tokens_cover():
    cfg = cnn_config("mean+max")
    cfg["weights"] = {"masked_frames": 1.0, "joint": 1.0}
    cfg["joint"] = {"method": "simclr", "hidden": 32, "dim": 16}
    cfg["views"] = [{"name": "crop"}]
    model = build_audio_model(cfg)
    rng = np.random.default_rng(0)
    out = model(audio_collate([(rng.standard_normal(int(n)) * 0.1).astype(np.float32) for n in (6000, 3000, 1500)]))
    assert torch.isfinite(out["loss"]) and out["masked_frames/loss"] > 0 and torch.isfinite(out["joint/loss"])
    out["loss"].backward()
