"""objectives.neighbour: nearest neighbours (self excluded, nearest first), reproducible partners, the
partner tokens carried through the collate, and the objective training on them."""

import numpy as np
import pytest
import torch

from ssl_modal.text import build_text_model
from ssl_modal.text.data import tokenize_texts
from ssl_modal.text.neighbours import draw_partners, nearest_neighbours, neighbour_pairs

from .conftest import tiny_model_config


def test_nearest_neighbours_match_brute_force_and_exclude_self():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x[7] = x[3] * 5.0  # same direction, other length: cosine 1
    got = nearest_neighbours(x, 4, block=16)  # blocks smaller than N
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    best = -np.sort(-sims, axis=1)[:, :4]  # compared by similarity: rows 3 and 7 tie for everyone else
    np.testing.assert_allclose(np.take_along_axis(sims, got, axis=1), best, rtol=1e-5)
    assert got[3, 0] == 7 and got[7, 0] == 3 and (got != np.arange(50)[:, None]).all()


def test_bad_k_is_refused():
    with pytest.raises(ValueError, match=r"neighbour_k must be in \[1, 2\] for 3 texts, found 3"):
        nearest_neighbours(np.eye(3), 3)


def test_partners_are_reproducible_neighbours():
    nn = np.array([[1, 2], [0, 2], [0, 1], [2, 1]])
    a, b = draw_partners(nn, 0), draw_partners(nn, 0)
    np.testing.assert_array_equal(a, b)
    assert all(a[i] in nn[i] for i in range(4))


def test_neighbour_objective_trains_on_mined_partners(small_tokenizer, sample_texts):
    torch.manual_seed(0)
    config = tiny_model_config(small_tokenizer)
    config["objectives"] = {"mlm": 0.0, "neighbour": 1.0}
    model = build_text_model(config).train()
    texts = sample_texts[:16]
    data = tokenize_texts(texts, small_tokenizer)
    emb = np.eye(16, dtype=np.float32) + 0.9 * np.eye(16, k=1, dtype=np.float32)  # row i's neighbour: i + 1
    pairs = neighbour_pairs(data, emb, 1, seed=0)
    assert pairs[0]["pair_input_ids"] == data[1]["input_ids"]
    batch = model.collate([pairs[i] for i in range(16)])
    assert batch["pair_input_ids"].shape[0] == 16
    assert batch["pair_attention_mask"].sum(1).tolist() == [len(data[int(i)]["input_ids"]) for i in range(1, 16)] + [
        len(data[14]["input_ids"])
    ]
    out = model(batch)
    assert out["neighbour/loss"] > 0 and "neighbour/real_tokens" in out
    out["loss"].backward()
    assert model.encoder.mlm.get_input_embeddings().weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs each text's mined partner"):
        model(model.collate(texts))
