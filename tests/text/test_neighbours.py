"""objectives.neighbour: nearest neighbours (self excluded, nearest first; dense or sparse TF-IDF rows),
reproducible partners, the partner tokens carried through the collate, the objective training on them, and
neighbour_source checked."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ssl_modal.text import build_text_model
from ssl_modal.text.data import tokenize_texts
from ssl_modal.text.neighbours import (
    agreed_neighbours,
    draw_partners,
    nearest_neighbours,
    neighbour_pairs,
    tfidf_vectors,
)

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


TOPIC_TEXTS = [  # four pairs: each text shares its rare words with exactly one other text
    "the central bank raised interest rates again",
    "interest rates rise as the central bank acts",
    "the striker scored twice in the cup final",
    "a cup final decided by the striker who scored",
    "the new chip doubles laptop battery life",
    "laptop makers want the chip for battery life",
    "rebels seized the northern city overnight",
    "the northern city fell to rebels overnight",
]


def test_tfidf_neighbours_share_words_and_exclude_self():
    vectors = tfidf_vectors(TOPIC_TEXTS)
    assert vectors.shape[0] == 8
    nn = nearest_neighbours(vectors, 1)
    np.testing.assert_array_equal(nn[:, 0], [1, 0, 3, 2, 5, 4, 7, 6])
    nn3 = nearest_neighbours(vectors, 3, block=3)  # blocks smaller than N
    assert (nn3 != np.arange(8)[:, None]).all() and (nn3[:, 0] == nn[:, 0]).all()
    for i, j in enumerate(nn[:, 0]):
        stop = {"the", "a", "as", "by", "in", "to", "for", "who", "new", "want", "again"}
        assert set(TOPIC_TEXTS[i].split()) & set(TOPIC_TEXTS[j].split()) - stop


def test_sparse_and_dense_vectors_give_the_same_neighbours():
    rng = np.random.default_rng(1)
    x = rng.random((40, 12)) * (rng.random((40, 12)) < 0.4)
    x[5] = 0.0  # a text with no term: no crash, never its own neighbour
    dense = nearest_neighbours(x, 3, block=7)
    sparse = nearest_neighbours(sp.csr_matrix(x), 3, block=7)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    for got in (dense, sparse):
        np.testing.assert_allclose(
            np.take_along_axis(sims, got, axis=1), -np.sort(-sims, axis=1)[:, :3], rtol=1e-5, atol=1e-6
        )
        assert (got != np.arange(40)[:, None]).all()


def test_bad_neighbour_source_is_refused():
    from ssl_modal.text.config import ObjectivesConfig

    assert ObjectivesConfig(neighbour=1.0, neighbour_source="tfidf").neighbour_source == "tfidf"
    with pytest.raises(
        ValueError, match=r"objectives.neighbour_source: expected one of 'model', 'tfidf', 'agreed', found 'bm25'"
    ):
        ObjectivesConfig(neighbour=1.0, neighbour_source="bm25")


def test_draws_repeat_the_corpus_with_fresh_partners(small_tokenizer, sample_texts):
    data = tokenize_texts(sample_texts[:30], small_tokenizer)
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(30, 6)).astype(np.float32)
    nn = nearest_neighbours(emb, 5)
    pairs = neighbour_pairs(data, emb, 5, seed=3, draws=3)
    assert len(pairs) == 90 and pairs["input_ids"][:30] == pairs["input_ids"][60:] == data["input_ids"]
    ids = data["input_ids"]
    partners = [[ids.index(pairs[c * 30 + i]["pair_input_ids"]) for i in range(30)] for c in range(3)]
    assert all(partners[c][i] in nn[i] for c in range(3) for i in range(30))
    assert partners[0] != partners[1] != partners[2]  # each copy draws its own partners
    np.testing.assert_array_equal(partners[1], draw_partners(nn, 4))  # copy c uses seed + c


def test_agreed_neighbours_rank_the_intersection_and_fill_from_the_first_list():
    first = np.array([[1, 2, 3, 4], [0, 2, 3, 4]])
    second = np.array([[4, 3, 9, 8], [5, 6, 7, 8]])
    out = agreed_neighbours(first, second, 3)
    # row 0: 3 (ranks 2 + 1) and 4 (3 + 0) in both, rank sums 3 and 3 -> the first list's order breaks the tie
    assert out[0].tolist() == [3, 4, 1]
    assert out[1].tolist() == [0, 2, 3]  # nothing in common: the first list's nearest
    with pytest.raises(ValueError, match="agreed_neighbours"):
        agreed_neighbours(first, second, 5)


def test_agreed_source_mines_through_the_recipe(tmp_path, small_tokenizer, sample_texts):
    from ssl_modal.text.config import TextConfig
    from ssl_modal.text.recipe import mine_partners

    config = TextConfig()
    config.objectives.neighbour, config.objectives.neighbour_source = 1.0, "agreed"
    config.objectives.neighbour_k = 3
    config.train.output_dir = str(tmp_path)
    model = build_text_model(tiny_model_config(small_tokenizer))
    texts = sample_texts[:60]
    data = tokenize_texts(texts, small_tokenizer)
    out = mine_partners(config, model, texts, data)
    assert len(out) == 60
    ids = [tuple(r) for r in data["input_ids"]]
    tfidf = nearest_neighbours(tfidf_vectors(texts), 50)
    for i in range(60):  # every partner is among TF-IDF's 50 nearest or the model's (the fill)
        j = ids.index(tuple(out[i]["pair_input_ids"]))
        assert j != i and 0 <= j < 60
    assert tfidf.shape == (60, 50)
