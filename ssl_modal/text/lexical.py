"""Lexical distillation (`objectives.lexical`): a linear head on the pooled sentence vector regresses each
text's LSA vector, a label-free statistic of the pretraining corpus.

A frozen all-MiniLM-L6-v2 and TF-IDF make different errors on AG News: concatenating MiniLM with a truncated
SVD of TF-IDF (LSA) lifts a linear probe above both (docs/text.md, issue 12). This objective asks the encoder
to carry those lexical directions itself: the targets are the rows of TruncatedSVD(`lexical_dims`) of the
TF-IDF vectors of the pretraining texts (`neighbours.tfidf_vectors`, fitted on those texts only, before the
first step, like the neighbour mining), L2-normalised; the loss is 1 - cosine between the head's output and
the target. The head is discarded at export; only what the encoder learned to carry stays.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ssl_modal.core.contract import Objective
from ssl_modal.text.neighbours import tfidf_vectors
from ssl_modal.text.sentence import anchor_vectors

TARGET_KEY = "lexical_target"  # the dataset column / batch key of the LSA targets


def lsa_rows(vectors, dims: int, seed: int = 0) -> np.ndarray:
    """(N, dims) float32 unit rows: TruncatedSVD (LSA) of a TF-IDF matrix `vectors`."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    reduced = TruncatedSVD(n_components=dims, random_state=seed).fit_transform(vectors)
    return normalize(reduced).astype(np.float32)


def lsa_targets(texts: list[str], dims: int, seed: int = 0) -> np.ndarray:
    """(N, dims) float32 unit rows: TruncatedSVD of the TF-IDF vectors of `texts` (fitted on them only)."""
    vectors = tfidf_vectors(texts)
    if not 1 <= dims < vectors.shape[1]:
        raise ValueError(f"objectives.lexical_dims must be in [1, {vectors.shape[1] - 1}] (TF-IDF terms), found {dims}")
    return lsa_rows(vectors, dims, seed)


class LexicalRegression(Objective):
    """1 - cosine(head(pooled text), LSA target), averaged over the batch (`lexical_target` in the batch)."""

    def __init__(self, hidden_size: int, dims: int):
        super().__init__()
        self.head = torch.nn.Linear(int(hidden_size), int(dims))

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        if TARGET_KEY not in batch:
            raise ValueError(
                "objectives.lexical needs each text's LSA target (lexical_target): train through the text recipe, "
                "which computes them (ssl_modal.text.lexical.lsa_targets), with data.pack: false"
            )
        pooled = anchor_vectors(encoder, batch)
        predicted = self.head(pooled.float())
        target = batch[TARGET_KEY].float()
        cosine = torch.nn.functional.cosine_similarity(predicted, target, dim=-1)
        return {"loss": 1.0 - cosine.mean(), "cosine": cosine.detach().mean()}
