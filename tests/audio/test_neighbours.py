"""Neighbour positives (ssl_modal/audio/neighbours.py): exact DTW, mining rules, the views, config errors,
and a tiny recipe run with `weights.neighbour`."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.audio.config import AudioConfig
from ssl_modal.audio.model import audio_collate, audio_model_config, build_audio_model
from ssl_modal.audio.neighbours import (
    NeighbourViews,
    attach_neighbours,
    balanced_distances,
    dtw_block,
    dtw_distances,
    dtw_features,
    mine_neighbours,
    nearest,
    partner_purity,
    smooth_within_groups,
)
from ssl_modal.core.config import ConfigError, load_config

from .conftest import REPO, SAMPLE, tiny_run_overrides
from .test_recipe import YAML, recipe_module


def naive_dtw(a: np.ndarray, b: np.ndarray, band=None) -> float:
    t = len(a)
    acc = np.full((t + 1, t + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, t + 1):
        for j in range(1, t + 1):
            if band is not None and abs(i - j) > band:
                continue
            cost = float(np.sqrt(((a[i - 1] - b[j - 1]) ** 2).sum()))
            acc[i, j] = cost + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return acc[t, t]


@pytest.mark.parametrize("band", [None, 2])
def test_dtw_equals_naive_reference(band):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 7, 4, generator=g), torch.randn(5, 7, 4, generator=g)
    got = dtw_block(a, b, band)
    want = np.array([[naive_dtw(x.numpy(), y.numpy(), band) for y in b] for x in a])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    full = dtw_distances(torch.cat([a, b]), band, pairs_per_block=5)  # several blocks
    np.testing.assert_allclose(full[:3, 3:].numpy(), want, rtol=1e-5, atol=1e-5)
    assert torch.allclose(full, full.T, atol=1e-5) and torch.all(full.diagonal().abs() < 5e-3)  # cdist: ~sqrt(eps)


def test_dtw_is_time_warp_invariant_where_euclid_is_not():
    x = torch.sin(torch.linspace(0, 6, 16))[:, None]
    shifted = torch.cat([x[:1], x[:-1]])  # the same curve one frame later
    other = torch.cos(torch.linspace(0, 6, 16))[:, None]
    d = dtw_block(x[None], torch.stack([shifted, other]))[0]
    assert d[0] < 0.5 * d[1]


def test_nearest_never_self_and_excludes_groups():
    d = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 5.0, 0.5], [2.0, 5.0, 0.0, 4.0], [3.0, 0.5, 4.0, 0.0]])
    assert nearest(d, 1).ravel().tolist() == [1, 3, 0, 1]
    got = nearest(d, 2, groups=["a", "a", "b", "b"])
    assert got.tolist() == [[2, 3], [3, 2], [0, 1], [1, 0]]
    assert all(i not in row for i, row in enumerate(nearest(d, 3)))
    with pytest.raises(ValueError, match=r"neighbour.k must be in \[1, 2\]"):
        nearest(d, 3, groups=["a", "a", "b", "b"])
    with pytest.raises(ValueError, match=r"neighbour.k must be in \[1, 3\]"):
        nearest(d, 4)


def test_smoothing_averages_over_same_group_neighbourhoods():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 6, generator=g, dtype=torch.float64)
    d = x + x.T
    groups = ["a", "a", "a", "b", "b", "b"]
    got = smooth_within_groups(d, groups, 1)
    mates = [[j for j in range(6) if j != i and groups[j] == groups[i]] for i in range(6)]
    own = [min(mates[i], key=lambda j, i=i: float(d[i, j])) for i in range(6)]
    want = [[float(d[[i, own[i]]][:, [j, own[j]]].mean()) for j in range(6)] for i in range(6)]  # naive reference
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert torch.equal(smooth_within_groups(d, groups, 0), d)
    full = smooth_within_groups(d, groups, 10)  # m is capped by the group size: everyone in the group
    np.testing.assert_allclose(float(full[0, 3]), float(d[:3, 3:].mean()), rtol=1e-12)


def test_balanced_matching_breaks_a_hub():
    # clip 3 (group b) is the nearest b-clip of every a-clip; a one-to-one matching 0-4, 1-3, 2-5 exists
    d = torch.tensor([[0.0, 9, 9, 1.0, 1.1, 3.0], [9, 0, 9, 1.0, 3.0, 3.0], [9, 9, 0, 1.0, 3.0, 1.2]])
    d = torch.cat([d, torch.cat([d[:, 3:].T, torch.full((3, 3), 9.0)], 1)])
    d[3:, 3:].fill_diagonal_(0.0)
    groups = ["a"] * 3 + ["b"] * 3
    assert nearest(d, 1, groups)[:3].ravel().tolist() == [3, 3, 3]
    out = balanced_distances(d, groups, eps=0.05)
    assert nearest(out, 1, groups)[:3].ravel().tolist() == [4, 3, 5]
    assert torch.isinf(out[:3, :3]).all() and torch.isinf(out[3:, 3:]).all()
    np.testing.assert_allclose(torch.exp(-out[:3, 3:]).sum(1).numpy(), 1.0, rtol=1e-9)  # a row-normalised plan
    with pytest.raises(ValueError, match="set neighbour.exclude_same too"):
        cfg = AudioConfig()
        cfg.neighbour.smooth = 2
        mine_neighbours([{"wave": np.ones(800, np.float32)}] * 4, cfg)


def test_ties_are_broken_by_index():
    assert nearest(torch.ones(4, 4), 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]


def test_mining_finds_the_same_word_from_another_speaker_and_is_deterministic():
    # two "words" (rising vs falling tone), each said by two "speakers" (loudness and pitch offset)
    sr = 8000
    t = np.arange(int(0.5 * sr)) / sr

    def chirp(f0, f1, scale):
        return (scale * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2))).astype(np.float32)

    segs = [
        {"wave": chirp(300, 1500, 0.3), "speaker": "s1"},
        {"wave": chirp(1500, 300, 0.3), "speaker": "s1"},
        {"wave": chirp(330, 1600, 0.05), "speaker": "s2"},
        {"wave": chirp(1600, 330, 0.05), "speaker": "s2"},
    ]
    cfg = AudioConfig()
    cfg.neighbour.k, cfg.neighbour.exclude_same = 1, "speaker"
    found = mine_neighbours(segs, cfg)
    assert found.ravel().tolist() == [2, 3, 0, 1]
    assert np.array_equal(found, mine_neighbours(segs, cfg))
    assert partner_purity(found, ["up", "down", "up", "down"]) == 1.0
    cfg.neighbour.balance = 0.5  # the balanced matching keeps the right partners
    assert mine_neighbours(segs, cfg).ravel().tolist() == [2, 3, 0, 1]
    cfg.neighbour.balance = None
    cfg.neighbour.exclude_same = "session"
    with pytest.raises(ValueError, match="neighbour.exclude_same: 'session' is not a column"):
        mine_neighbours(segs, cfg)


def test_features_trim_silence():
    sr = 8000
    t = np.arange(int(0.3 * sr)) / sr
    word = (0.3 * np.sin(2 * np.pi * (300 * t + 2000 * t**2))).astype(np.float32)  # a chirp
    padded = np.concatenate([np.zeros(4000, np.float32), word, np.zeros(2000, np.float32)])
    a, b = dtw_features([word, padded], sr, frames=16)
    _, untrimmed = dtw_features([word, padded], sr, frames=16, trim_db=300.0)
    assert a.shape == (16, 12)
    assert (a - b).abs().mean() < 0.3 * (a - untrimmed).abs().mean()


def test_neighbour_views_draw_one_partner_per_clip_reproducibly():
    segs = [{"wave": np.full(100 + 10 * i, float(i), np.float32)} for i in range(4)]
    batch = audio_collate(attach_neighbours(segs, np.array([[1, 2], [0, 3], [3, 1], [2, 0]])))
    assert batch["pair_wave"].shape == (4, 2, 130) and batch["pair_lengths"][0].tolist() == [110, 120]
    views = NeighbourViews(lambda b, g: b)
    a, b = views(batch, torch.Generator().manual_seed(3))
    a2, b2 = views(batch, torch.Generator().manual_seed(3))
    assert torch.equal(b["wave"], b2["wave"]) and torch.equal(a["wave"], batch["wave"])
    partner = b["wave"][:, 0].long().tolist()
    assert all(p in row for p, row in zip(partner, [[1, 2], [0, 3], [3, 1], [2, 0]], strict=True))
    assert b["lengths"].tolist() == [100 + 10 * p for p in partner]
    with pytest.raises(KeyError, match="weights.neighbour needs batches with 'pair_wave'"):
        views(audio_collate(segs), torch.Generator())


def test_model_with_neighbour_objective_trains_a_step():
    cfg = AudioConfig()
    cfg.encoder.kind, cfg.encoder.channels, cfg.encoder.dim = "cnn", 4, 16
    cfg.weights = {"neighbour": 1.0}
    cfg.joint.hidden, cfg.joint.dim = 32, 16
    cfg.neighbour.method = "simclr"
    model = build_audio_model(audio_model_config(cfg, None))
    assert model.objectives["neighbour"].config.method == "simclr"
    rng = np.random.default_rng(0)
    segs = [{"wave": rng.standard_normal(3000).astype(np.float32) * 0.1} for _ in range(6)]
    batch = audio_collate(attach_neighbours(segs, nearest(torch.rand(6, 6), 2)))
    out = model.objectives["neighbour"](model.encoder, batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and "acc" in out


def test_bad_neighbour_config_is_refused():
    with pytest.raises(ConfigError, match="neighbour.method: expected one of simclr, byol"):
        load_config(AudioConfig, YAML, ["neighbour.method=nnclr"], demo=True)
    with pytest.raises(ConfigError, match="neighbour.k"):
        load_config(AudioConfig, YAML, ["neighbour.k=0"], demo=True)
    with pytest.raises(ConfigError, match="neighbour.smooth"):
        load_config(AudioConfig, YAML, ["neighbour.smooth=-1"], demo=True)
    with pytest.raises(ConfigError, match="neighbour.balance"):
        load_config(AudioConfig, YAML, ["neighbour.balance=0"], demo=True)
    with pytest.raises(ConfigError, match="unknown key 'neighbour.exclude', did you mean 'exclude_same'"):
        load_config(AudioConfig, YAML, ["neighbour.exclude=speaker"], demo=True)


def test_tiny_recipe_run_with_neighbour_objective(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    rows = pd.read_csv(SAMPLE / "manifest.csv")
    rows = rows[rows["index"] < 2].assign(path=lambda f: [str(SAMPLE / p) for p in f.path])  # 80 clips
    rows.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "run"
    overrides = [
        *tiny_run_overrides(out, tmp_path / "m.csv", steps=3),
        "weights.neighbour=1.0",
        "neighbour.k=2",
        "neighbour.exclude_same=speaker",
        "eval.pretrain_all=false",
        "eval.held_out=[george]",
        "eval.label_counts=[0]",
        "eval.finetune_counts=[]",
    ]
    assert recipe_module().main(["--config", YAML, "--demo", *overrides]) == 0
    records = [json.loads(line) for line in (out / "heldout_george" / "seed0" / "metrics.jsonl").open()]
    assert any("neighbour/loss" in r for r in records)
    protocol = json.loads((out / "protocol.json").read_text())
    assert {"SSL encoder, frozen", "random-init encoder, frozen"} <= {r["row"] for r in protocol["summary"]}
