"""Nearest-neighbour positives for continued pretraining of a sentence encoder (`objectives.neighbour`).

A model that is already a sentence encoder (all-MiniLM-L6-v2: trained contrastively on 1B pairs) gives
unsupervised SimCSE no signal (its two dropout views are near-identical: loss ~0). What it does know is
which texts of the corpus are alike: neighbours in its embedding space mostly share a topic (DocSCAN,
Stammbach & Ash 2021, builds unsupervised AG News classification on exactly that). `objectives.neighbour`
makes each text's positive one of its `neighbour_k` nearest neighbours (cosine, mined once with the model
the run starts from, before the first step; the text itself excluded), with the other texts of the batch
as negatives (InfoNCE, as in NNCLR, Dwibedi et al. 2021): the corpus's clusters tighten, which is what a
linear probe for topics needs. The partner of each text is drawn once, uniformly among its k neighbours,
from the run's seed (`objectives.neighbour_draws` > 1: the corpus repeated with one draw per copy).

For a model trained from scratch the starting model knows nothing, so `objectives.neighbour_source: tfidf`
mines the neighbours from TF-IDF vectors of the pretraining corpus instead (`tfidf_vectors`: a label-free
corpus statistic, no pretrained model): the encoder then learns to put texts that share rare words together.
`neighbour_source: agreed` keeps the neighbours both agree on (`agreed_neighbours`: a rank intersection of the
model's and TF-IDF's lists), for purer positives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

NEIGHBOUR_SOURCES = ("model", "tfidf", "agreed")  # objectives.neighbour_source


def tfidf_vectors(texts: list[str]) -> sp.csr_matrix:
    """L2-normalised TF-IDF rows of `texts` (word unigrams, sublinear tf, English stop words dropped, words in
    at least 2 texts and at most half of them), fitted on these texts only: the label-free statistic
    `objectives.neighbour_source: tfidf` mines neighbours with."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2, max_df=0.5)
    return vectorizer.fit_transform(texts).tocsr()


def nearest_neighbours(embeddings, k: int, block: int = 2048) -> np.ndarray:
    """(N, D) vectors (dense, or a scipy sparse matrix such as TF-IDF rows) -> (N, k) indices of each row's
    k most cosine-similar other rows, nearest first."""
    from sklearn.preprocessing import normalize

    sparse = sp.issparse(embeddings)
    x: Any = sp.csr_matrix(embeddings, dtype=np.float32) if sparse else np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"neighbour mining needs at least 2 embeddings (N, D), found shape {x.shape}")
    k = int(k)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"objectives.neighbour_k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} texts, found {k}")
    x = normalize(x)  # unit rows (a row of zeros stays zero): dot products are cosines
    xt = x.T.tocsc() if sparse else x.T
    out = np.empty((x.shape[0], k), dtype=np.int64)
    for start in range(0, x.shape[0], block):
        sims = x[start : start + block] @ xt
        sims = sims.toarray() if sparse else sims
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # never a text's own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def agreed_neighbours(first: np.ndarray, second: np.ndarray, k: int) -> np.ndarray:
    """(N, k) neighbours two sources agree on: from each row's two ranked lists (N, M) (nearest first), the
    indices in both, ordered by the sum of their two ranks; rows with fewer than k in common are filled from
    `first`'s list in its order."""
    if first.shape[0] != second.shape[0] or first.shape[1] < k:
        raise ValueError(f"agreed_neighbours: lists {first.shape} and {second.shape} for k = {k}")
    out = np.empty((first.shape[0], k), dtype=np.int64)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        rank_b = {int(j): r for r, j in enumerate(b)}
        common = sorted((r + rank_b[int(j)], r, int(j)) for r, j in enumerate(a) if int(j) in rank_b)
        chosen = [j for _, _, j in common[:k]]
        taken = set(chosen)
        chosen += [int(j) for j in a if int(j) not in taken][: k - len(chosen)]
        out[i] = chosen
    return out


def draw_partners(neighbours: np.ndarray, seed: int) -> np.ndarray:
    """One partner per row, uniform among its neighbours (reproducible from `seed`)."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, neighbours.shape[1], size=neighbours.shape[0])
    return neighbours[np.arange(neighbours.shape[0]), pick]


def add_partner_column(data, partners: np.ndarray):
    """The tokenized dataset with `pair_input_ids`: the tokens of each row's partner row."""
    ids = data["input_ids"]
    return data.add_column("pair_input_ids", [ids[int(j)] for j in partners])


def neighbour_pairs(data, embeddings, k: int, seed: int, draws: int = 1, neighbours_given: bool = False):
    """`add_partner_column(data, draw_partners(nearest_neighbours(embeddings, k), seed))`; with `draws` > 1 the
    corpus is repeated `draws` times, each copy with its own partner draw (seeds seed, seed + 1, ...), so a run
    of several epochs does not see one fixed partner per text (a small encoder memorises fixed pairs).
    `neighbours_given`: `embeddings` is already the (N, k) neighbour lists."""
    neighbours = embeddings if neighbours_given else nearest_neighbours(embeddings, k)
    copies = [add_partner_column(data, draw_partners(neighbours, seed + d)) for d in range(int(draws))]
    if len(copies) == 1:
        return copies[0]
    from datasets import concatenate_datasets

    return concatenate_datasets(copies)
