"""Cluster objectives for continued pretraining of a sentence encoder (`objectives.cluster`).

Before the first step, the pretraining texts are over-clustered (k-means, `cluster_k` clusters, more than the
unknown number of classes) on the starting model's embeddings (`cluster_features: model`) or on those beside an
LSA projection of the corpus's TF-IDF rows (`model+tfidf`: both unit-normalised, concatenated; the lexical
view MiniLM lacks). A head of `cluster_k` prototypes, initialised at the clusters' mean model embeddings,
scores each text by cosine / `temperature`:

- `cluster_mode: pseudo` (DeepCluster, Caron et al. 2018; prototypical contrast, Li et al. 2021): cross-entropy
  to each text's k-means cluster: texts move toward their cluster's prototype and away from the others.
- `cluster_mode: scan` (SCAN, Van Gansbeke et al. 2020; SCCL, Zhang et al. 2021): a text and its mined
  neighbour should get the same soft assignment, -log <p_i, p_j>, minus `cluster_entropy` x the entropy of
  the batch's mean assignment (no collapse onto few clusters). Needs the neighbour pairs.

With `objectives.neighbour` also on, the pooled vectors of the neighbour objective's two views are reused
(the batch's `sentence_views`, left there by `NeighbourPairs`): no second encoding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ssl_modal.core.contract import Objective
from ssl_modal.text.sentence import VIEWS_KEY, anchor_vectors

CLUSTER_FEATURES = ("model", "model+tfidf")  # objectives.cluster_features
CLUSTER_MODES = ("pseudo", "scan")  # objectives.cluster_mode
LSA_DIM = 256  # model+tfidf: TF-IDF rows projected to this many LSA components


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cluster_space(embeddings: np.ndarray, texts: list[str], features: str, seed: int) -> np.ndarray:
    """The vectors k-means runs on: unit model embeddings, or [unit model ; unit LSA-256 of TF-IDF] / sqrt(2)
    (TF-IDF fitted on `texts`, the pretraining corpus, only)."""
    if features not in CLUSTER_FEATURES:
        raise ValueError(f"objectives.cluster_features: expected one of {CLUSTER_FEATURES}, found {features!r}")
    x = _unit(embeddings)
    if features == "model":
        return x
    if len(texts) != x.shape[0]:
        raise ValueError(f"cluster_space: {len(texts)} texts for {x.shape[0]} embeddings")
    from ssl_modal.text.lexical import lsa_rows
    from ssl_modal.text.neighbours import tfidf_vectors

    tfidf = tfidf_vectors(texts)
    lsa = lsa_rows(tfidf, min(LSA_DIM, tfidf.shape[1] - 1, x.shape[0] - 1), seed)
    return np.hstack([x, lsa]) / np.sqrt(2.0)


def cluster_targets(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N,) k-means cluster ids in [0, k) of the rows of `vectors` (MiniBatchKMeans, reproducible from `seed`)."""
    from sklearn.cluster import MiniBatchKMeans

    if not 2 <= k <= vectors.shape[0]:
        raise ValueError(f"objectives.cluster_k must be in [2, {vectors.shape[0]}] for {vectors.shape[0]} texts")
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048)
    return km.fit_predict(np.asarray(vectors, dtype=np.float32)).astype(np.int64)


def prototypes(embeddings: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """(k, D) unit mean of each cluster's unit model embeddings (an empty cluster: a zero row)."""
    x = _unit(embeddings)
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, targets, x)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def scan_loss(p_a: Tensor, p_b: Tensor, entropy_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """SCAN: (loss, consistency, entropy) for soft assignments (B, K) of texts and their neighbours;
    consistency = -mean_i log <p_a[i], p_b[i]>, entropy = H(mean_i p_a[i]); loss = consistency - w x entropy."""
    consistency = -torch.log((p_a * p_b).sum(-1).clamp(min=1e-8)).mean()
    mean = p_a.mean(0)
    entropy = -(mean * torch.log(mean.clamp(min=1e-8))).sum()
    return consistency - entropy_weight * entropy, consistency, entropy


class ClusterHead(Objective):
    """Prototype head (K, D) on the pooled text vector, cosine / temperature logits; `mode` pseudo or scan."""

    def __init__(self, dim: int, k: int, mode: str = "pseudo", temperature: float = 0.05, entropy: float = 5.0):
        super().__init__()
        if mode not in CLUSTER_MODES:
            raise ValueError(f"objectives.cluster_mode: expected one of {CLUSTER_MODES}, found {mode!r}")
        self.mode, self.temperature, self.entropy = mode, float(temperature), float(entropy)
        self.prototypes = torch.nn.Parameter(F.normalize(torch.randn(int(k), int(dim)), dim=-1))

    @torch.no_grad()
    def set_prototypes(self, centres: np.ndarray) -> None:
        """Start the head at the k-means clusters' mean embeddings (`prototypes`)."""
        if tuple(centres.shape) != tuple(self.prototypes.shape):
            raise ValueError(f"prototypes: expected shape {tuple(self.prototypes.shape)}, found {centres.shape}")
        self.prototypes.copy_(torch.as_tensor(centres, dtype=self.prototypes.dtype))

    def logits(self, pooled: Tensor) -> Tensor:
        return F.normalize(pooled.float(), dim=-1) @ F.normalize(self.prototypes, dim=-1).T / self.temperature

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        if self.mode == "pseudo":
            if "cluster_labels" not in batch:
                raise ValueError(
                    "objectives.cluster needs each text's k-means cluster (cluster_labels): train through the text "
                    "recipe, which computes them before the first step, with data.pack: false"
                )
            logits = self.logits(anchor_vectors(encoder, batch))
            target = batch["cluster_labels"].to(logits.device)
            loss = F.cross_entropy(logits, target)
            return {"loss": loss, "accuracy": (logits.argmax(-1) == target).float().mean().detach()}
        views = batch.get(VIEWS_KEY)
        if views is None:
            if "pair_input_ids" not in batch:
                raise ValueError("objectives.cluster_mode: scan needs the mined neighbour pairs (pair_input_ids)")
            pair = {"input_ids": batch["pair_input_ids"], "attention_mask": batch["pair_attention_mask"]}
            views = (encoder.sentences(batch), encoder.sentences(pair))
        p_a, p_b = (self.logits(v).softmax(-1) for v in views)
        loss, consistency, entropy = scan_loss(p_a, p_b, self.entropy)
        agree = (p_a.argmax(-1) == p_b.argmax(-1)).float().mean()
        return {"loss": loss, "consistency": consistency.detach(), "entropy": entropy.detach(), "agreement": agree}
