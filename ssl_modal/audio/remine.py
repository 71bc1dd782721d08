"""Re-mining the neighbour pairs mid-run with the encoder's own embeddings (`neighbour.remine_at`).

The DTW pairs of `ssl_modal.audio.neighbours` are mined once, before step 1, from MFCC sequences. Part-way
through the run the encoder already groups clips by content better than one DTW alignment does, so at each
fraction of `neighbour.remine_at` (of the run's expected steps: with `train.max_minutes`, of the clock) every
pretraining clip is embedded with the current encoder (eval mode, the pooled output the probes use), the
cosine distances are mixed with the DTW distances (`neighbour.remine_weight`: each standardised over the
pairs of different groups), and the same same-group smoothing, balanced matching and k-nearest rule as the
first mining give the new partners. With `neighbour.remine_target: clusters` (or `both`) the cluster ids of
`neighbour.clusters` are recomputed from the same mixed distances instead (or as well): the clustering graph of
`ssl_modal.audio.clusters`, spectral clustering with the run's seed. Label-free, deterministic (no random draw),
and the partners and ids are part of the objective's state (`get_extra_state`), so checkpoints carry them and
a resumed run trains on the same pairs and clusters.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from ssl_modal.audio.model import audio_collate
from ssl_modal.audio.neighbours import partner_item, partners_from_distances, same_group_mask
from ssl_modal.core.contract import Encoder
from ssl_modal.core.joint import JointEmbedding

log = logging.getLogger("ssl_modal")


class PartnerData:
    """The pretraining clips as the trainer's dataset: item i is segment i plus the waves of its current
    partners ("neighbour_waves", collated into "pair_wave" by `audio_collate`). `partners` (N, k) is read when
    a batch is collated, so replacing it mid-run changes the next batch's pairs (needs train.num_workers 0).
    `distances` (N, N) are the first mining's DTW distances and `groups` the `exclude_same` values. `clusters`
    (N,), once re-clustered, replaces the segments' "cluster" ids; `seed` seeds the re-clustering."""

    def __init__(
        self, segments: list[dict], partners: np.ndarray, distances: torch.Tensor, groups, seed: int = 0
    ) -> None:
        if len(partners) != len(segments) or distances.shape != (len(segments), len(segments)):
            raise ValueError(
                f"PartnerData: {len(segments)} segments, partners of shape {tuple(partners.shape)} and distances "
                f"of shape {tuple(distances.shape)} do not match"
            )
        self.segments = segments
        self.partners = np.asarray(partners, dtype=np.int64)
        self.distances = distances
        self.groups = list(groups)
        self.seed = int(seed)
        self.clusters: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, i: int) -> dict:
        item = partner_item(self.segments, i, self.partners[i])
        if self.clusters is not None:  # neighbour.remine_target: clusters | both
            item["cluster"] = int(self.clusters[i])
        return item


@torch.no_grad()
def embed_clips(encoder: Encoder, segments: list[dict], batch_size: int = 128) -> torch.Tensor:
    """(N, D) pooled embeddings of the segments' waves, encoder in eval mode (restored afterwards)."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        blocks = []
        for start in range(0, len(segments), batch_size):
            batch = audio_collate([{"wave": s["wave"]} for s in segments[start : start + batch_size]])
            blocks.append(encoder({k: v.to(device) for k, v in batch.items()}).pooled.double().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(blocks)


def mixed_distances(dtw: torch.Tensor, embeddings: torch.Tensor, groups, weight: float) -> torch.Tensor:
    """(1 - weight) z(dtw) + weight z(1 - cosine(embeddings)), each standardised over the pairs of different
    groups (the only pairs that can become partners); weight 1: the embeddings alone."""
    e = F.normalize(embeddings.double(), dim=1)
    cosine = 1 - e @ e.T
    cross = ~same_group_mask(groups)
    if not cross.any():
        raise ValueError("re-mining needs clips of at least two groups (neighbour.exclude_same)")

    def z(d: torch.Tensor) -> torch.Tensor:
        v = d[cross]
        return (d - v.mean()) / v.std().clamp_min(1e-12)

    return (1 - weight) * z(dtw.double()) + weight * z(cosine)


class RemineEmbedding(JointEmbedding):
    """`JointEmbedding` on neighbour pairs that re-mines them at the fractions `remine_at` of the run (see the
    module's docstring). `attach(data)` hands it the `PartnerData` the trainer reads; `neighbour` is the
    recipe's `neighbour:` section (k, smooth, balance, remine_weight)."""

    def __init__(
        self,
        config,
        input_dim: int,
        views,
        encoder: Encoder,
        neighbour: dict,
        labels_key: str | None = None,
        groups_key: str | None = None,
        num_labels: int = 0,
        label_weight: float = 0.0,
    ) -> None:
        super().__init__(config, input_dim, views, encoder, labels_key, groups_key, num_labels, label_weight)
        self.neighbour = dict(neighbour)
        self.remine_at = sorted(float(f) for f in neighbour.get("remine_at") or [])
        self.remined = 0  # how many of remine_at are done
        self.target = self.neighbour.get("remine_target", "partners")  # partners | clusters | both
        self.partners: np.ndarray | None = None  # the latest re-mined partners (None: the first mining's)
        self.clusters: np.ndarray | None = None  # the latest re-computed cluster ids (None: the first mining's)
        self.data: PartnerData | None = None

    def attach(self, data: PartnerData) -> None:
        self.data = data
        if self.partners is not None:
            data.partners = self.partners
        if self.clusters is not None:
            data.clusters = self.clusters

    def on_step_end(self, encoder: Encoder, step: int, max_steps: int) -> None:
        super().on_step_end(encoder, step, max_steps)
        due = sum(step >= f * max_steps for f in self.remine_at)
        if due > self.remined:
            self.remine(encoder, step)
            self.remined = due

    def remine(self, encoder: Encoder, step: int) -> np.ndarray:
        """New partners from the encoder's embeddings mixed with the DTW distances; pushed to the data."""
        if self.data is None:
            raise RuntimeError("neighbour.remine_at needs the pretraining clips: call attach(PartnerData) first")
        nb, data = self.neighbour, self.data
        start = time.perf_counter()
        d = mixed_distances(data.distances, embed_clips(encoder, data.segments), data.groups, nb["remine_weight"])
        found = data.partners
        if self.target in ("partners", "both"):
            found = partners_from_distances(d, data.groups, nb["k"], nb.get("smooth", 0), nb.get("balance"))
            changed = np.mean([len(set(a) - set(b)) / len(a) for a, b in zip(found, data.partners, strict=True)])
            self.partners = data.partners = found
            log.info(
                "neighbour re-mining at step %d: %.0f %% of the (clip, partner) pairs are new", step, 100 * changed
            )
        if self.target in ("clusters", "both"):
            self.clusters = data.clusters = self.recluster(d)
        log.info(
            "neighbour re-mining (%s) at step %d, weight %.2f on the encoder's cosine distances: %.1f s",
            self.target,
            step,
            nb["remine_weight"],
            time.perf_counter() - start,
        )
        return found

    def recluster(self, d: torch.Tensor) -> np.ndarray:
        """Cluster ids from the mixed distances `d`: the first clustering's graph and spectral clustering."""
        from sklearn.metrics import adjusted_rand_score

        from ssl_modal.audio.clusters import cluster_graph, spectral_clusters

        assert self.data is not None
        nb, data = self.neighbour, self.data
        graph = cluster_graph(
            d, data.groups, nb["cluster_within"], nb["cluster_cross"], nb.get("smooth", 0), nb.get("balance")
        )
        ids = spectral_clusters(graph, nb["clusters"], data.seed)
        before = data.clusters if data.clusters is not None else [s["cluster"] for s in data.segments]
        sizes = np.bincount(ids, minlength=nb["clusters"])
        log.info(
            "neighbour re-clustering: %d clusters (sizes %d-%d), adjusted Rand index %.3f against the previous ids",
            nb["clusters"],
            sizes.min(),
            sizes.max(),
            adjusted_rand_score(before, ids),
        )
        return ids

    def get_extra_state(self) -> dict:
        def tensor(x: np.ndarray | None) -> torch.Tensor:
            return torch.empty(0, dtype=torch.long) if x is None else torch.as_tensor(x)

        return {"remined": self.remined, "partners": tensor(self.partners), "clusters": tensor(self.clusters)}

    def set_extra_state(self, state: dict) -> None:
        self.remined = int(state["remined"])
        partners = state["partners"]
        self.partners = None if partners.numel() == 0 else partners.numpy().astype(np.int64)
        clusters = state.get("clusters", torch.empty(0))  # absent in checkpoints from before re-clustering
        self.clusters = None if clusters.numel() == 0 else clusters.numpy().astype(np.int64)
        if self.data is not None:
            self.attach(self.data)
