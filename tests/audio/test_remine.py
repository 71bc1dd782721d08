"""Re-mining the neighbour pairs with the encoder (ssl_modal/audio/remine.py): the distance mix, the trigger,
partners in the checkpoint, and exact resume across a re-mining."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_modal.audio.config import AudioConfig
from ssl_modal.audio.model import audio_collate, audio_model_config, build_audio_model
from ssl_modal.audio.neighbours import NeighbourViews, partners_from_distances
from ssl_modal.audio.remine import PartnerData, RemineEmbedding, embed_clips, mixed_distances
from ssl_modal.core.config import ConfigError, load_config
from ssl_modal.core.contract import Encoder, EncoderOutput
from ssl_modal.core.joint import JointConfig

from .test_recipe import YAML

GROUPS = ["s1"] * 3 + ["s2"] * 3  # each "speaker" says words 0, 1, 2


class WordEncoder(Encoder):
    """Stub: a clip's wave is filled with its word id; pooled = one-hot of that word (plus a learnable bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(3))

    def forward(self, batch: dict) -> EncoderOutput:
        words = batch["wave"][:, 0].round().long()
        pooled = F.one_hot(words, 3).float() + 0.01 * self.bias
        return EncoderOutput(pooled[:, None], torch.ones(len(words), 1, dtype=torch.bool), pooled)


def toy_data() -> PartnerData:
    segments = [{"wave": np.full(200, float(i % 3), np.float32), "speaker": g} for i, g in enumerate(GROUPS)]
    # DTW that pairs each word with the NEXT word of the other speaker: i -> 3 + (i + 1) % 3, and back
    dtw = torch.full((6, 6), 5.0)
    for i in range(3):
        dtw[i, 3 + (i + 1) % 3] = dtw[3 + (i + 1) % 3, i] = 1.0
    return PartnerData(segments, partners_from_distances(dtw, GROUPS, 1), dtw, GROUPS)


def test_mixed_distances_move_from_dtw_to_the_embeddings():
    data = toy_data()
    assert data.partners.ravel().tolist() == [4, 5, 3, 2, 0, 1]  # the DTW's (wrong) partners
    emb = embed_clips(WordEncoder(), data.segments, batch_size=4)  # several batches
    assert torch.equal(emb, F.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).double())
    for weight, want in ((0.0, [4, 5, 3, 2, 0, 1]), (1.0, [3, 4, 5, 0, 1, 2])):
        d = mixed_distances(data.distances, emb, GROUPS, weight)
        assert partners_from_distances(d, GROUPS, 1).ravel().tolist() == want
    cross = torch.tensor([[a != b for b in GROUPS] for a in GROUPS])
    d = mixed_distances(data.distances, emb, GROUPS, 0.5)
    assert abs(float(d[cross].mean())) < 1e-9  # each part standardised over the cross-group pairs
    with pytest.raises(ValueError, match="at least two groups"):
        mixed_distances(data.distances, emb, ["one"] * 6, 0.5)


def test_remining_triggers_once_at_its_fraction_and_replaces_the_partners():
    data, encoder = toy_data(), WordEncoder()
    nb = {"k": 1, "smooth": 0, "balance": None, "remine_at": [0.5], "remine_weight": 1.0}
    objective = RemineEmbedding(JointConfig(method="simclr", hidden=8, dim=4), 3, NeighbourViews(None), encoder, nb)
    with pytest.raises(RuntimeError, match="attach"):
        objective.on_step_end(encoder, 5, 10)
    objective.attach(data)
    objective.on_step_end(encoder, 4, 10)
    assert objective.remined == 0 and data.partners.ravel().tolist() == [4, 5, 3, 2, 0, 1]
    objective.on_step_end(encoder, 5, 10)
    assert objective.remined == 1 and data.partners.ravel().tolist() == [3, 4, 5, 0, 1, 2]  # same word now
    assert [len(w) for w in data[0]["neighbour_waves"]] == [200] and data[0]["neighbour_waves"][0][0] == 0.0
    state = objective.get_extra_state()
    data.partners = np.zeros((6, 1), np.int64)
    objective.on_step_end(encoder, 6, 10)  # done: no second re-mining
    assert data.partners.sum() == 0
    fresh = RemineEmbedding(JointConfig(method="simclr", hidden=8, dim=4), 3, NeighbourViews(None), encoder, nb)
    fresh.set_extra_state(state)
    other = toy_data()
    fresh.attach(other)  # a resumed run's data gets the checkpoint's partners
    assert fresh.remined == 1 and other.partners.ravel().tolist() == [3, 4, 5, 0, 1, 2]


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")  # one component per word, by design
@pytest.mark.parametrize("target", ["clusters", "both"])
def test_reclustering_replaces_the_cluster_ids_and_travels_in_the_state(target):
    data, encoder = toy_data(), WordEncoder()
    data.segments = [{**s, "cluster": c} for s, c in zip(data.segments, [0, 1, 2, 2, 0, 1], strict=True)]  # DTW's
    nb = {"k": 1, "smooth": 0, "balance": None, "remine_at": [0.5], "remine_weight": 1.0, "remine_target": target}
    nb.update(clusters=3, cluster_within=0, cluster_cross=1)
    cfg = JointConfig(method="simclr", hidden=8, dim=4)
    objective = RemineEmbedding(cfg, 3, NeighbourViews(None), encoder, nb, labels_key="cluster")
    objective.attach(data)
    assert data[0]["cluster"] == 0 and data[4]["cluster"] == 0  # the first clustering's ids
    objective.on_step_end(encoder, 5, 10)
    ids = data.clusters
    assert ids is not None and len(set(ids.tolist())) == 3
    assert all(ids[i] == ids[i + 3] for i in range(3))  # one cluster per word now
    assert [data[i]["cluster"] for i in range(6)] == ids.tolist()
    pairs = data.partners.ravel().tolist()
    assert pairs == ([4, 5, 3, 2, 0, 1] if target == "clusters" else [3, 4, 5, 0, 1, 2])  # partners kept or not
    fresh = RemineEmbedding(cfg, 3, NeighbourViews(None), encoder, nb, labels_key="cluster")
    fresh.set_extra_state(objective.get_extra_state())
    other = toy_data()
    fresh.attach(other)  # a resumed run's data gets the checkpoint's ids
    assert np.array_equal(other.clusters, ids) and other.partners.ravel().tolist() == pairs
    with pytest.raises(ConfigError, match="remine_target: 'clusters' needs neighbour.clusters > 0"):
        load_config(AudioConfig, YAML, ["neighbour.remine_target=clusters", "neighbour.clusters=0"], demo=True)
    with pytest.raises(ConfigError, match="remine_target: expected one of partners, clusters, both"):
        load_config(AudioConfig, YAML, ["neighbour.remine_target=ids"], demo=True)


def test_partner_data_checks_shapes_and_collates_pairs():
    data = toy_data()
    batch = audio_collate([data[i] for i in range(6)])
    assert batch["pair_wave"].shape == (6, 1, 200)
    assert batch["pair_wave"][:, 0, 0].tolist() == [1.0, 2.0, 0.0, 2.0, 0.0, 1.0]  # the partners' words
    with pytest.raises(ValueError, match="do not match"):
        PartnerData(data.segments, data.partners[:3], data.distances, GROUPS)


def tiny_model(remine_at):
    cfg = AudioConfig()
    cfg.encoder.kind, cfg.encoder.channels, cfg.encoder.dim = "cnn", 4, 16
    cfg.weights = {"neighbour": 1.0}
    cfg.joint.hidden, cfg.joint.dim = 32, 16
    cfg.neighbour.method, cfg.neighbour.k, cfg.neighbour.remine_at = "simclr", 2, remine_at
    torch.manual_seed(0)
    return build_audio_model(audio_model_config(cfg, None))


def test_resume_across_remining_equals_the_uninterrupted_run(tmp_path):
    from ssl_modal import Trainer
    from ssl_modal.core.checkpoint import load_checkpoint, step_checkpoints
    from tests.train_configs import quiet_config

    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(1500 + 100 * i).astype(np.float32) * 0.1 for i in range(16)]
    groups = ["a", "b"] * 8
    dtw = torch.as_tensor(rng.random((16, 16)))
    dtw = dtw + dtw.T

    def fit():
        segments = [{"wave": w, "speaker": g} for w, g in zip(waves, groups, strict=True)]
        data = PartnerData(segments, partners_from_distances(dtw, groups, 2), dtw, groups)
        model = tiny_model([0.3, 0.7])  # re-mined at steps 3 (before the step-5 checkpoint) and 7 (after)
        assert isinstance(model.objectives["neighbour"], RemineEmbedding)
        model.objectives["neighbour"].attach(data)
        cfg = quiet_config(
            tmp_path,
            max_steps=10,
            batch_size=8,
            warmup_steps=2,
            log_every=5,
            checkpoint_every=5,
        )
        Trainer(cfg).fit(model, data, audio_collate)
        return data.partners.copy()

    first = partners_from_distances(dtw, groups, 2)
    partners = fit()
    full = load_checkpoint(tmp_path / "model.pt")["model"]
    assert not np.array_equal(partners, first)  # the encoder's embeddings changed the pairs
    assert full["objectives.neighbour._extra_state"]["remined"] == 2
    step_checkpoints(tmp_path / "checkpoints")[-1].unlink()  # keep step 5 only: as if killed after it
    (tmp_path / "model.pt").unlink()
    assert np.array_equal(fit(), partners)
    resumed = load_checkpoint(tmp_path / "model.pt")["model"]
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)


def test_without_remine_at_the_plain_objective_is_built():
    assert not isinstance(tiny_model([]).objectives["neighbour"], RemineEmbedding)
    with pytest.raises(ConfigError, match="neighbour.remine_at"):
        load_config(AudioConfig, YAML, ["neighbour.remine_at=[1.5]"], demo=True)
    with pytest.raises(ConfigError, match="neighbour.remine_weight"):
        load_config(AudioConfig, YAML, ["neighbour.remine_weight=2"], demo=True)
