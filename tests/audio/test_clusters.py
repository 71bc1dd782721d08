"""Label-free clusters of the pretraining clips (ssl_modal/audio/clusters.py): the graph, the clustering, the
batch key, the supervised-contrastive objective on it, config errors, a tiny recipe run and exact resume."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_modal.audio.clusters import attach_clusters, attach_groups, cluster_graph, cluster_purity, spectral_clusters
from ssl_modal.audio.config import AudioConfig
from ssl_modal.audio.model import audio_collate, audio_model_config, build_audio_model
from ssl_modal.audio.neighbours import NeighbourViews, attach_neighbours, nearest
from ssl_modal.audio.remine import PartnerData
from ssl_modal.core.config import ConfigError, load_config

from .conftest import REPO, SAMPLE, tiny_run_overrides
from .test_recipe import YAML


def word_distances(words, groups, noise: float = 0.2, seed: int = 0) -> torch.Tensor:
    """Toy DTW: clips of the same word are close (closer still within a group), others far, plus noise."""
    rng = np.random.default_rng(seed)
    w, g = np.asarray(words), np.asarray(groups)
    d = np.where(w[:, None] == w[None, :], 1.0, 3.0) - 0.5 * (g[:, None] == g[None, :])
    d = d + noise * rng.random(d.shape)
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return torch.as_tensor(d)


WORDS = [i % 4 for i in range(24)]  # 4 words x 2 clips x 3 groups
GROUPS = [["a", "b", "c"][i // 8] for i in range(24)]


def test_graph_links_own_group_neighbours_and_each_other_group():
    d = word_distances(WORDS, GROUPS)
    w = cluster_graph(d, GROUPS, within=1, cross=2)
    assert np.array_equal(w, w.T) and np.all(np.diag(w) == 0)
    g, words = np.asarray(GROUPS), np.asarray(WORDS)
    for i in range(24):
        linked = np.flatnonzero(w[i])
        assert any(g[j] == g[i] for j in linked)  # its own group's nearest clip (the same word)
        for h in set(GROUPS) - {g[i]}:
            assert sum(g[j] == h for j in linked) >= 2  # at least its 2 nearest clips of each other group
        assert np.all(words[linked] == words[i])  # on this toy data every link says the same word
    with pytest.raises(ValueError, match="at least two groups"):
        cluster_graph(d, ["a"] * 24)


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")  # one component per word, by design
def test_spectral_clusters_recover_the_words_deterministically():
    d = word_distances(WORDS, GROUPS)
    graph = cluster_graph(d, GROUPS, within=1, cross=2, smooth=1, balance=0.5)
    ids = spectral_clusters(graph, 4, seed=0)
    assert cluster_purity(ids, WORDS) == 1.0 and len(set(ids.tolist())) == 4
    assert np.array_equal(ids, spectral_clusters(graph, 4, seed=0))
    assert cluster_purity(np.zeros(24, dtype=int), WORDS) == 0.25
    with pytest.raises(ValueError, match=r"neighbour.clusters must be in \[2, 23\]"):
        spectral_clusters(graph, 24, seed=0)


def tiny_model(clusters: int, positives: str = "all"):
    cfg = AudioConfig()
    cfg.encoder.kind, cfg.encoder.channels, cfg.encoder.dim = "cnn", 4, 16
    cfg.weights = {"neighbour": 1.0}
    cfg.joint.hidden, cfg.joint.dim = 32, 16
    cfg.neighbour.method, cfg.neighbour.exclude_same, cfg.neighbour.clusters = "simclr", "speaker", clusters
    cfg.neighbour.cluster_positives = positives
    torch.manual_seed(0)
    return build_audio_model(audio_model_config(cfg, None))


def test_clusters_travel_in_the_batch_and_turn_the_loss_supervised():
    rng = np.random.default_rng(0)
    segs = [{"wave": rng.standard_normal(2000 + 50 * i).astype(np.float32) * 0.1} for i in range(6)]
    segs = attach_clusters(attach_neighbours(segs, nearest(torch.rand(6, 6), 2)), np.array([0, 0, 1, 1, 1, 2]))
    batch = audio_collate(segs)
    assert batch["cluster"].tolist() == [0, 0, 1, 1, 1, 2] and "pair_wave" in batch
    model = tiny_model(3)
    out = model.objectives["neighbour"](model.encoder, batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["positives"] == pytest.approx((2 * 3 + 3 * 5 + 1) / 6)
    assert "positives" not in tiny_model(0).objectives["neighbour"](model.encoder, audio_collate(segs))


def test_groups_travel_with_the_partners_and_drop_same_speaker_positives():
    rng = np.random.default_rng(1)
    speakers = ["b", "a", "b", "c", "a", "c"]
    segs = [
        {"wave": rng.standard_normal(2000 + 50 * i).astype(np.float32) * 0.1, "speaker": s}
        for i, s in enumerate(speakers)
    ]
    segs = attach_groups(attach_clusters(segs, np.array([0, 0, 0, 1, 1, 1])), speakers)
    assert [s["group"] for s in segs] == [1, 0, 1, 2, 0, 2]  # index among the sorted names
    partners = np.array([[1, 3], [0, 5], [4, 3], [2, 1], [5, 0], [0, 4]])  # always another speaker
    batch = audio_collate(attach_neighbours(segs, partners))
    assert batch["group"].tolist() == [1, 0, 1, 2, 0, 2]
    assert batch["pair_group"].tolist() == [[segs[j]["group"] for j in row] for row in partners]
    remine_item = PartnerData(segs, partners, torch.zeros(6, 6), speakers)[3]
    assert remine_item["neighbour_groups"] == [1, 0]
    view_a, view_b = NeighbourViews(lambda b, g: b)(batch, torch.Generator().manual_seed(0))
    group_of_length = {len(s["wave"]): s["group"] for s in segs}
    assert view_a["group"].tolist() == batch["group"].tolist()
    assert view_b["group"].tolist() == [group_of_length[int(n)] for n in view_b["lengths"]]  # the drawn partner's
    out_all = tiny_model(2)
    cross = tiny_model(2, "cross_group")
    cross.load_state_dict(out_all.state_dict())
    got = cross.objectives["neighbour"](cross.encoder, batch)
    got["loss"].backward()
    assert (
        torch.isfinite(got["loss"])
        and 1 <= got["positives"] < out_all.objectives["neighbour"](out_all.encoder, batch)["positives"]
    )


def test_clusters_need_simclr_and_exclude_same():
    with pytest.raises(ConfigError, match="neighbour.clusters needs the simclr method.*found method 'byol'"):
        load_config(AudioConfig, YAML, ["neighbour.clusters=10", "neighbour.method=byol"], demo=True)
    with pytest.raises(ConfigError, match="exclude_same None"):
        load_config(AudioConfig, YAML, ["neighbour.clusters=10", "neighbour.exclude_same=null"], demo=True)
    with pytest.raises(ConfigError, match="neighbour.clusters"):
        load_config(AudioConfig, YAML, ["neighbour.clusters=-1"], demo=True)
    with pytest.raises(ConfigError, match="cluster_positives: expected one of all, cross_group, found 'cross'"):
        load_config(AudioConfig, YAML, ["neighbour.cluster_positives=cross"], demo=True)
    with pytest.raises(ConfigError, match="cluster_head needs neighbour.clusters > 0 .* found clusters 0"):
        load_config(AudioConfig, YAML, ["neighbour.cluster_head=0.5", "neighbour.clusters=0"], demo=True)
    with pytest.raises(ConfigError, match="remine_target 'both'"):
        load_config(AudioConfig, YAML, ["neighbour.cluster_head=0.5", "neighbour.remine_target=both"], demo=True)
    with pytest.raises(ConfigError, match="'cross_group' needs neighbour.clusters > 0"):
        load_config(AudioConfig, YAML, ["neighbour.cluster_positives=cross_group", "neighbour.clusters=0"], demo=True)


REMINE = ["neighbour.remine_at=[0.3,0.8]", "neighbour.remine_target=both", "train.num_workers=0"]  # steps 2, 5


@pytest.mark.parametrize(
    "extra", [[], ["neighbour.cluster_positives=cross_group"], REMINE, ["neighbour.cluster_head=0.5"]]
)
def test_tiny_recipe_run_with_clusters_resumes_exactly(tmp_path, monkeypatch, caplog, extra):
    from ssl_modal.audio.recipe import train
    from ssl_modal.core.checkpoint import load_checkpoint, step_checkpoints

    monkeypatch.chdir(REPO)
    rows = pd.read_csv(SAMPLE / "manifest.csv")
    rows = rows[(rows["index"] < 2) & (rows.speaker != "george")]  # 60 clips, 3 speakers
    rows.assign(path=lambda f: [str(SAMPLE / p) for p in f.path]).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "run"
    overrides = [
        *tiny_run_overrides(out, tmp_path / "m.csv", steps=6),
        "train.checkpoint_every=3",
        "neighbour.k=2",
        "neighbour.clusters=5",
        *extra,
    ]
    cfg = load_config(AudioConfig, YAML, overrides, demo=True)
    caplog.set_level("INFO", logger="ssl_modal")
    train(cfg)
    assert "neighbour clusters: 5 clusters of 60 clips" in caplog.text
    assert ("neighbour re-clustering: 5 clusters" in caplog.text) == (extra == REMINE)
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert any("neighbour/label_ce" in r for r in records) == ("neighbour.cluster_head=0.5" in extra)
    assert any(r.get("neighbour/positives", 0) > 1 for r in records)  # same-cluster clips in the batches
    full = load_checkpoint(out / "model.pt")["model"]
    step_checkpoints(out / "checkpoints")[-1].unlink()  # keep step 3 only: as if killed after it
    (out / "model.pt").unlink()
    train(cfg)
    torch.testing.assert_close(load_checkpoint(out / "model.pt")["model"], full, rtol=0, atol=0)
