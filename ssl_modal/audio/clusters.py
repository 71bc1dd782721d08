"""Label-free cluster ids for the pretraining clips (`neighbour.clusters: K`), from the mined DTW distances.

SimCLR on neighbour pairs treats every other clip of the batch as a negative: with 10 words and a batch of
64, about 6 clips per anchor say the same word (false negatives). With `neighbour.clusters: K` the clips are
grouped once, after mining, by spectral clustering of a k-nearest-neighbour graph, and the joint objective
turns into a supervised contrastive loss (`ssl_modal.core.joint.sup_con`) whose positives are the partner and
every clip of the anchor's cluster. The graph joins each clip to its `within` nearest clips of its own group
(raw DTW: within one speaker these nearly always say the same word) and to its `cross` nearest clips of each
other group on the smoothed, balanced distances the partners are mined from (`neighbour.smooth`, `.balance`),
symmetrised; `sklearn.cluster.SpectralClustering(affinity="precomputed", assign_labels="cluster_qr")` with
the run's seed. No label is read; `cluster_purity` scores the clusters afterwards, for the report only.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ssl_modal.audio.neighbours import balanced_distances, group_names, smooth_within_groups

log = logging.getLogger("ssl_modal")


def cluster_graph(
    distances: torch.Tensor, groups, within: int = 10, cross: int = 5, smooth: int = 0, balance: float | None = None
) -> np.ndarray:
    """(N, N) symmetric 0/1 affinity: each clip's `within` nearest clips of its own group (raw distances)
    and its `cross` nearest clips of every other group (after optional smoothing and balanced matching)."""
    d = distances.double()
    g = group_names(groups)
    n = len(g)
    names = np.unique(g)
    if len(names) < 2:
        raise ValueError("neighbour.clusters needs clips of at least two groups (neighbour.exclude_same)")
    same = g[:, None] == g[None, :]
    w = np.zeros((n, n))
    own = d.numpy().copy()
    own[~same] = np.inf
    np.fill_diagonal(own, np.inf)
    k_own = min(within, int(same.sum(1).min()) - 1)
    if k_own > 0:
        rows = np.arange(n)[:, None]
        w[rows, np.argsort(own, axis=1, kind="stable")[:, :k_own]] = 1.0
    other = smooth_within_groups(d, groups, smooth) if smooth else d
    if balance is not None:
        other = balanced_distances(other, groups, balance)
    other_np = other.numpy()
    for h in names:
        cols = np.flatnonzero(g == h)
        rows = np.flatnonzero(g != h)
        k = min(cross, len(cols))
        nearest = cols[np.argsort(other_np[np.ix_(rows, cols)], axis=1, kind="stable")[:, :k]]
        w[rows[:, None], nearest] = 1.0
    return np.maximum(w, w.T)


def spectral_clusters(affinity: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N,) cluster ids 0..k-1 of the graph's nodes: spectral clustering, deterministic for a seed."""
    from sklearn.cluster import SpectralClustering

    n = affinity.shape[0]
    if not 2 <= k < n:
        raise ValueError(f"neighbour.clusters must be in [2, {n - 1}] (the clips to cluster: {n}), found {k}")
    model = SpectralClustering(k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed)
    return model.fit_predict(affinity).astype(np.int64)


def mine_clusters(distances: torch.Tensor, groups, neighbour, seed: int) -> np.ndarray:
    """(N,) cluster ids from the mining's DTW distances with the `neighbour:` section's clusters, smooth,
    balance, cluster_within and cluster_cross; logs the count, sizes and groups per cluster."""
    start = time.perf_counter()
    graph = cluster_graph(
        distances, groups, neighbour.cluster_within, neighbour.cluster_cross, neighbour.smooth, neighbour.balance
    )
    ids = spectral_clusters(graph, neighbour.clusters, seed)
    sizes = np.bincount(ids, minlength=neighbour.clusters)
    g = group_names(groups)
    spread = np.mean([len(np.unique(g[ids == c])) for c in np.unique(ids)])
    log.info(
        "neighbour clusters: %d clusters of %d clips (sizes %d-%d, median %d; %.1f groups per cluster) in %.1f s",
        neighbour.clusters,
        len(ids),
        sizes.min(),
        sizes.max(),
        int(np.median(sizes)),
        spread,
        time.perf_counter() - start,
    )
    return ids


def attach_clusters(segments: list[dict], ids: np.ndarray) -> list[dict]:
    """Copies of `segments` carrying "cluster" (collated into batch["cluster"] by `audio_collate`)."""
    return [{**s, "cluster": int(c)} for s, c in zip(segments, ids, strict=True)]


def attach_groups(segments: list[dict], groups) -> list[dict]:
    """Copies of `segments` carrying "group": the index of their `exclude_same` value among the sorted values
    (collated into batch["group"]; `neighbour.cluster_positives: cross_group`)."""
    ids = np.unique(group_names(groups), return_inverse=True)[1]
    return [{**s, "group": int(c)} for s, c in zip(segments, ids, strict=True)]


def cluster_purity(ids: np.ndarray, labels) -> float:
    """Share of clips whose label is their cluster's most frequent one: a diagnostic measured afterwards."""
    labels = np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)[1]
    ids = np.asarray(ids)
    return float(sum(np.bincount(labels[ids == c]).max() for c in np.unique(ids)) / len(ids))
