"""objectives.cluster: the SCAN and pseudo-label losses against hand computations, k-means targets computed from
the pretraining texts only and reproducible by seed, the head starting at the clusters' mean embeddings, the
neighbour objective's views reused, and the config checks."""

import numpy as np
import pytest
import torch

from ssl_modal.text import build_text_model
from ssl_modal.text.clusters import ClusterHead, cluster_space, cluster_targets, prototypes, scan_loss
from ssl_modal.text.config import ModelConfig, ObjectivesConfig, TextConfig
from ssl_modal.text.data import tokenize_texts

from .conftest import tiny_model_config


def test_scan_loss_matches_a_hand_computation():
    p_a = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    p_b = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    loss, consistency, entropy = scan_loss(p_a, p_b, entropy_weight=2.0)
    dots = [0.7 * 0.6 + 0.2 * 0.3 + 0.1 * 0.1, 0.1 * 0.2 + 0.8 * 0.2 + 0.1 * 0.6]  # 0.49, 0.24
    mean = [0.4, 0.5, 0.1]
    want_c = -(np.log(dots[0]) + np.log(dots[1])) / 2
    want_h = -sum(m * np.log(m) for m in mean)
    assert consistency.item() == pytest.approx(want_c, rel=1e-6)
    assert entropy.item() == pytest.approx(want_h, rel=1e-6)
    assert loss.item() == pytest.approx(want_c - 2.0 * want_h, rel=1e-6)


def test_pseudo_label_loss_matches_a_hand_computation():
    head = ClusterHead(dim=2, k=3, mode="pseudo", temperature=0.5)
    head.set_prototypes(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32))
    a = torch.tensor([[3.0, 4.0], [0.0, -2.0]])  # unit: (0.6, 0.8), (0, -1)
    out = head(None, {"sentence_views": (a, a), "cluster_labels": torch.tensor([1, 2])})
    logits = np.array([[0.6, 0.8, -0.6], [0.0, -1.0, 0.0]]) / 0.5
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert out["loss"].item() == pytest.approx(-(logp[0, 1] + logp[1, 2]) / 2, rel=1e-5)
    assert out["accuracy"].item() == pytest.approx(0.5)  # row 0 picks 1 (right); row 1 ties 0 and 2, argmax 0


def test_kmeans_targets_are_reproducible_and_find_separated_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32) * 10
    x = np.concatenate([c + rng.normal(size=(30, 16)).astype(np.float32) for c in centres])
    a, b = cluster_targets(x, 4, seed=3), cluster_targets(x, 4, seed=3)
    np.testing.assert_array_equal(a, b)
    for g in range(4):  # each generated group is one cluster
        assert len(set(a[g * 30 : (g + 1) * 30])) == 1
    assert len(set(a)) == 4
    protos = prototypes(x, a, 4)
    assert np.allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)
    assert (np.argmax(protos @ centres.T, axis=1)[a[::30]] == np.arange(4)).all()
    with pytest.raises(ValueError, match="cluster_k must be in"):
        cluster_targets(x, 1, seed=0)


def test_model_plus_tfidf_space_is_fitted_on_the_given_texts(sample_texts):
    emb = np.random.default_rng(1).normal(size=(80, 8)).astype(np.float32)
    x = cluster_space(emb, sample_texts[:80], "model+tfidf", seed=0)
    assert x.shape[0] == 80 and x.shape[1] > 8
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)  # two unit halves / sqrt(2)
    np.testing.assert_array_equal(x, cluster_space(emb, sample_texts[:80], "model+tfidf", seed=0))
    with pytest.raises(ValueError, match="80 embeddings"):
        cluster_space(emb, sample_texts[:81], "model+tfidf", seed=0)
    with pytest.raises(ValueError, match="cluster_features"):
        cluster_space(emb, sample_texts[:80], "tfidf", seed=0)


def _cluster_config(tmp_path, **objectives) -> TextConfig:
    config = TextConfig()
    config.objectives = ObjectivesConfig(**{"mlm": 0.0, "cluster": 1.0, "cluster_k": 5, **objectives})
    config.train.output_dir = str(tmp_path)
    config.eval.cache_features = False
    return config


def _model(small_tokenizer, config: TextConfig):
    from dataclasses import asdict

    torch.manual_seed(0)
    model_config = tiny_model_config(small_tokenizer)
    model_config["objectives"] = asdict(config.objectives)
    return build_text_model(model_config)


def test_recipe_clusters_the_pretraining_texts_only_and_reproducibly(tmp_path, small_tokenizer, sample_texts):
    from ssl_modal.text.recipe import mine_partners, start_embeddings

    config = _cluster_config(tmp_path, cluster_features="model+tfidf")
    texts = sample_texts[:60]
    runs = []
    for _ in range(2):
        model = _model(small_tokenizer, config)
        data = mine_partners(config, model, texts, tokenize_texts(texts, small_tokenizer))
        runs.append((np.array(data["cluster_labels"]), model.objectives["cluster"].prototypes.detach().clone()))
    assert "pair_input_ids" not in data.column_names  # pseudo labels alone: no neighbour mining
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][1], runs[1][1])
    emb = start_embeddings(config, _model(small_tokenizer, config), texts)
    want = cluster_targets(cluster_space(emb, texts, "model+tfidf", seed=0), 5, seed=0)
    np.testing.assert_array_equal(runs[0][0], want)  # from these 60 texts alone
    assert torch.allclose(runs[0][1], torch.as_tensor(prototypes(emb, want, 5)))


def test_cluster_with_neighbour_reuses_its_views_and_trains(tmp_path, small_tokenizer, sample_texts, monkeypatch):
    from ssl_modal.text.recipe import mine_partners

    config = _cluster_config(tmp_path, neighbour=1.0, neighbour_k=2)
    texts = sample_texts[:24]
    model = _model(small_tokenizer, config).train()
    data = mine_partners(config, model, texts, tokenize_texts(texts, small_tokenizer))
    batch = model.collate([data[i] for i in range(8)])
    assert batch["cluster_labels"].tolist() == data["cluster_labels"][:8]
    calls = []
    original = type(model.encoder).sentences
    monkeypatch.setattr(
        type(model.encoder), "sentences", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    out = model(batch)
    assert len(calls) == 2  # the text and its partner, once each
    assert out["cluster/loss"] > 0 and out["neighbour/loss"] > 0
    out["loss"].backward()
    assert model.objectives["cluster"].prototypes.grad.abs().sum() > 0


def test_scan_mode_mines_pairs_without_the_neighbour_objective(tmp_path, small_tokenizer, sample_texts):
    from ssl_modal.text.recipe import mine_partners

    config = _cluster_config(tmp_path, cluster_mode="scan", neighbour_k=2, cluster_entropy=1.0)
    texts = sample_texts[:24]
    model = _model(small_tokenizer, config).train()
    data = mine_partners(config, model, texts, tokenize_texts(texts, small_tokenizer))
    out = model(model.collate([data[i] for i in range(8)]))
    assert set(out) >= {"cluster/consistency", "cluster/entropy", "cluster/agreement"}
    assert out["cluster/loss"].item() == pytest.approx(
        (out["cluster/consistency"] - out["cluster/entropy"]).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="needs the mined neighbour pairs"):
        model(model.collate(texts[:8]))


@pytest.mark.parametrize(
    "override, message",
    [({"cluster_mode": "soft"}, "cluster_mode"), ({"cluster_features": "tfidf"}, "cluster_features")],
)
def test_bad_cluster_settings_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        ObjectivesConfig(cluster=1.0, **override)


def test_cluster_with_exported_layers_is_refused():
    """k-means would run on the exported concatenation of layers, the head on the last layer: refused by name."""
    with pytest.raises(ValueError, match="objectives.cluster with model.pooling_layers"):
        TextConfig(objectives=ObjectivesConfig(cluster=1.0), model=ModelConfig(pooling_layers=[2, 4, 6]))
    assert TextConfig(objectives=ObjectivesConfig(cluster=1.0)).objectives.cluster == 1.0
