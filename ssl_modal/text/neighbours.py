"""Nearest-neighbour positives for continued pretraining of a sentence encoder (`objectives.neighbour`).

A model that is already a sentence encoder (all-MiniLM-L6-v2: trained contrastively on 1B pairs) gives
unsupervised SimCSE no signal (its two dropout views are near-identical: loss ~0). What it does know is
which texts of the corpus are alike: neighbours in its embedding space mostly share a topic (DocSCAN,
Stammbach & Ash 2021, builds unsupervised AG News classification on exactly that). `objectives.neighbour`
makes each text's positive one of its `neighbour_k` nearest neighbours (cosine, mined once with the model
the run starts from, before the first step; the text itself excluded), with the other texts of the batch
as negatives (InfoNCE, as in NNCLR, Dwibedi et al. 2021): the corpus's clusters tighten, which is what a
linear probe for topics needs. The partner of each text is drawn once, uniformly among its k neighbours,
from the run's seed.
"""

from __future__ import annotations

import numpy as np


def nearest_neighbours(embeddings: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """(N, D) vectors -> (N, k) indices of each row's k most cosine-similar other rows, nearest first."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"neighbour mining needs at least 2 embeddings (N, D), found shape {x.shape}")
    k = int(k)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"objectives.neighbour_k must be in [1, {x.shape[0] - 1}] for {x.shape[0]} texts, found {k}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = np.empty((x.shape[0], k), dtype=np.int64)
    for start in range(0, x.shape[0], block):
        sims = x[start : start + block] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # never a text's own neighbour
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
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


def neighbour_pairs(data, embeddings: np.ndarray, k: int, seed: int):
    """`add_partner_column(data, draw_partners(nearest_neighbours(embeddings, k), seed))`."""
    return add_partner_column(data, draw_partners(nearest_neighbours(embeddings, k), seed))
