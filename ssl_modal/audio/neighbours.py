"""Nearest-neighbour positives for the audio joint objective (`weights.neighbour`, `neighbour:` section).

BYOL on two augmented views of ONE clip must learn speaker invariance from augmentations alone; with
three speakers it learns little of it. `weights.neighbour` gives the joint objective positives that
share the content and differ in the speaker: each clip's partner is one of its `neighbour.k` nearest
clips of the pretraining set (NNCLR, Dwibedi et al. 2021), mined label-free before step 1 with the
classic unsupervised spoken-term-discovery distance: dynamic time warping between per-utterance
normalised MFCC sequences (c0 dropped), silence trimmed by an energy threshold, each sequence resampled
to `neighbour.frames` frames so that the DP runs batched over blocks of pairs (anti-diagonal by
anti-diagonal), optionally inside a Sakoe-Chiba band. `neighbour.exclude_same: speaker` takes partners
only from other groups of that column (speaker metadata a user has). No label is read here;
`partner_purity` measures afterwards how often partners share a label, for the report only.
"""

from __future__ import annotations

import logging
import time
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from ssl_modal.audio.frontend import mfcc_transform

log = logging.getLogger("ssl_modal")


def dtw_features(
    waves,
    sample_rate: int,
    n_mfcc: int = 13,
    n_fft: int = 256,
    hop_length: int = 80,
    n_mels: int = 40,
    frames: int = 32,
    trim_db: float = 30.0,
) -> torch.Tensor:
    """(N, frames, n_mfcc - 1): per clip, MFCC 1..n_mfcc-1 of the frames from the first to the last whose
    energy is within `trim_db` of the clip's loudest frame, standardised per coefficient over those frames
    (per-utterance mean/variance normalisation), linearly resampled to `frames` frames."""
    if n_mfcc < 2 or frames < 2:
        raise ValueError(f"neighbour: n_mfcc and frames must be >= 2, found {n_mfcc} and {frames}")
    mfcc = mfcc_transform(sample_rate, n_mfcc, n_fft, hop_length, n_mels)
    mel = cast(torch.nn.Module, mfcc.MelSpectrogram)  # the MFCC's own mel power spectrogram
    out = []
    with torch.no_grad():
        for wave in waves:
            x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
            m = mfcc(x)  # (n_mfcc, T)
            energy = mel(x).sum(0)  # (T,) mel power per frame
            db = 10 * torch.log10(energy + 1e-10)
            loud = torch.nonzero(db >= db.max() - trim_db).flatten()
            m = m[1:, int(loud[0]) : int(loud[-1]) + 1] if loud.numel() else m[1:]
            m = (m - m.mean(1, keepdim=True)) / m.std(1, unbiased=False, keepdim=True).clamp_min(1e-5)
            out.append(F.interpolate(m[None], size=frames, mode="linear", align_corners=True)[0].T)
    return torch.stack(out)


def dtw_block(a: torch.Tensor, b: torch.Tensor, band: int | None = None) -> torch.Tensor:
    """(M, N) exact DTW distances between sequences a (M, T, D) and b (N, T, D): frame cost Euclidean,
    steps (1,0), (0,1), (1,1) unweighted, the path from (0,0) to (T-1,T-1); cells with |i - j| > band
    are forbidden (Sakoe-Chiba) when `band` is set. The DP runs anti-diagonal by anti-diagonal, every
    pair at once: on diagonal d = i + j of the (T+1)^2 table, cell i needs cells i-1 and i of diagonal
    d-1 and cell i-1 of diagonal d-2, all contiguous slices."""
    m, t, _ = a.shape
    n = b.shape[0]
    pairs = m * n
    cost = torch.cdist(a.reshape(m * t, -1), b.reshape(n * t, -1)).reshape(m, t, n, t)
    cost = torch.cat([cost.permute(1, 3, 0, 2).reshape(t * t, pairs), torch.full((1, pairs), float("inf"))])
    i = torch.arange(t + 1)[None, :]  # row of the padded table (1..t are frames)
    j = torch.arange(2 * t + 1)[:, None] - i
    valid = (i >= 1) & (j >= 1) & (j <= t)
    if band is not None:
        valid &= (i - j).abs() <= band
    flat = torch.where(valid, (i - 1) * t + (j - 1), t * t)  # t * t: the row of inf
    skew = cost.index_select(0, flat.reshape(-1)).reshape(2 * t + 1, t + 1, pairs)
    prev2 = torch.full((t + 1, pairs), float("inf"))
    prev2[0] = 0.0  # diagonal 0: the table's origin
    prev1 = torch.full((t + 1, pairs), float("inf"))  # diagonal 1: borders only
    for d in range(2, 2 * t + 1):
        cur = torch.full((t + 1, pairs), float("inf"))
        cur[1:] = skew[d, 1:] + torch.minimum(torch.minimum(prev1[:-1], prev1[1:]), prev2[:-1])
        prev2, prev1 = prev1, cur
    return prev1[t].reshape(m, n)


def dtw_distances(x: torch.Tensor, band: int | None = None, pairs_per_block: int = 16384) -> torch.Tensor:
    """(N, N) DTW distances between all sequences of x (N, T, D): blocks of anchor rows against the rows
    from the block on (the upper triangle), mirrored (the step pattern is symmetric)."""
    n = x.shape[0]
    out = torch.zeros(n, n)
    start = 0
    while start < n:
        rows = max(1, min(n - start, pairs_per_block // max(1, n - start)))
        out[start : start + rows, start:] = dtw_block(x[start : start + rows], x[start:], band)
        start += rows
    return torch.triu(out) + torch.triu(out, 1).T


def group_names(groups) -> np.ndarray:
    """The group value of each row as a string array (ids of any type compare by their text)."""
    return np.asarray([str(v) for v in groups])


def same_group_mask(groups) -> torch.Tensor:
    """(N, N) bool: True where two rows share a group value."""
    g = group_names(groups)
    return torch.as_tensor(g[:, None] == g[None, :])


def smooth_within_groups(distances: torch.Tensor, groups, m: int) -> torch.Tensor:
    """A D A^T, A row-normalised over each clip and its `m` nearest clips of its OWN group: the distance
    between two clips becomes the mean distance between their same-group neighbourhoods. Within one
    speaker nearest clips nearly always say the same thing (purity 0.98 on FSDD), so averaging over them
    damps the noise of single cross-speaker DTW distances."""
    d = distances.double()
    n = d.shape[0]
    same = same_group_mask(groups)
    own = d.masked_fill(~same, float("inf")).fill_diagonal_(float("inf"))
    m = min(m, int(same.sum(1).min()) - 1)
    a = torch.eye(n, dtype=torch.float64)
    if m > 0:
        a.scatter_(1, torch.topk(own, m, dim=1, largest=False).indices, 1.0)
    a /= a.sum(1, keepdim=True)
    return a @ d @ a.T


def balanced_distances(distances: torch.Tensor, groups, eps: float, iters: int = 200) -> torch.Tensor:
    """Hubness correction by balanced matching: for each ordered pair of groups (g, h), the entropic
    optimal-transport plan (Sinkhorn, log domain) between g's and h's clips with uniform marginals on the
    block's cost (scaled to unit std, temperature `eps`); returned as -log(the plan's row normalised
    within the block), so every clip spreads the same mass over each other group. A clip close to
    everyone (a hub) cannot be every clip's partner. Same-group entries are +inf."""
    d = distances.double()
    g = group_names(groups)
    out = torch.full_like(d, float("inf"))
    names = np.unique(g)
    for a, b in ((a, b) for a in names for b in names if a != b):
        ia, ib = torch.as_tensor(np.flatnonzero(g == a)), torch.as_tensor(np.flatnonzero(g == b))
        block = d[ia][:, ib]
        logk = -block / (block.std().clamp_min(1e-12) * eps)
        f, h = torch.zeros(len(ia), dtype=d.dtype), torch.zeros(len(ib), dtype=d.dtype)
        for _ in range(iters):
            f = -torch.logsumexp(logk + h[None, :], 1)
            h = -torch.logsumexp(logk + f[:, None], 0)
        logp = logk + h[None, :]  # the log plan up to each row's constant f
        out[ia[:, None], ib[None, :]] = torch.logsumexp(logp, 1, keepdim=True) - logp
    return out


def nearest(distances: torch.Tensor, k: int, groups=None) -> np.ndarray:
    """(N, k) indices of each row's k nearest other rows (ties by index), never the row itself and, with
    `groups` (one value per row), never a row of the same group."""
    d = distances.clone().double()
    n = d.shape[0]
    d.fill_diagonal_(float("inf"))
    if groups is not None:
        same = same_group_mask(groups)
        d[same] = float("inf")
        available = n - int(same.sum(1).max())
        what = f"clips outside the clip's own group (fewest: {available})"
    else:
        available, what = n - 1, f"other clips ({n - 1})"
    if not 1 <= k <= available:
        raise ValueError(f"neighbour.k must be in [1, {available}] (the {what}), found {k}")
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), d.numpy()), axis=1)
    return order[:, :k].astype(np.int64)


def partners_from_distances(d: torch.Tensor, groups, k: int, smooth: int = 0, balance: float | None = None):
    """(N, k) partners from a distance matrix: optional same-group smoothing, balanced matching, k nearest."""
    if smooth:
        d = smooth_within_groups(d, groups, smooth)
    if balance is not None:
        d = balanced_distances(d, groups, balance)
    return nearest(d, k, groups)


def mine_neighbours(segments: list[dict], cfg) -> np.ndarray:
    """(N, neighbour.k) partner candidates for the pretraining `segments` (dicts with "wave"; with
    `neighbour.exclude_same`, that column too), from `cfg.neighbour` and `cfg.frontend`."""
    return mine_with_distances(segments, cfg)[0]


def mine_with_distances(segments: list[dict], cfg) -> tuple[np.ndarray, torch.Tensor, list | None]:
    """`mine_neighbours`, also returning the DTW distances (N, N) and the group of each segment (or None)."""
    nb, f = cfg.neighbour, cfg.frontend
    groups = None
    if (nb.smooth or nb.balance is not None) and not nb.exclude_same:
        raise ValueError("neighbour.smooth and neighbour.balance work per group: set neighbour.exclude_same too")
    if nb.exclude_same:
        missing = [i for i, s in enumerate(segments) if nb.exclude_same not in s]
        if missing:
            raise ValueError(
                f"neighbour.exclude_same: '{nb.exclude_same}' is not a column of the pretraining data "
                f"(segment {missing[0]} has keys {sorted(k for k in segments[missing[0]] if k != 'wave')}); "
                "name a manifest column or set it to null"
            )
        groups = [s[nb.exclude_same] for s in segments]
    start = time.perf_counter()
    x = dtw_features(
        [s["wave"] for s in segments], f.sample_rate, nb.n_mfcc, f.n_fft, f.hop_length, f.n_mels, nb.frames, nb.trim_db
    )
    d = dtw_distances(x, nb.band)
    found = partners_from_distances(d, groups, nb.k, nb.smooth, nb.balance)
    log.info(
        "neighbour mining: DTW over %d clips (%d frames, band %s, exclude_same %s, smooth %d, balance %s) in %.1f s",
        len(segments),
        nb.frames,
        nb.band,
        nb.exclude_same,
        nb.smooth,
        nb.balance,
        time.perf_counter() - start,
    )
    return found, d, groups


def partner_item(segments: list[dict], i: int, row) -> dict:
    """A copy of segment `i` carrying "neighbour_waves": the waves of the segments in `row` (shared arrays),
    and "neighbour_groups" (their "group" ids) when the segments carry "group"."""
    item = {**segments[i], "neighbour_waves": [segments[int(j)]["wave"] for j in row]}
    if "group" in item:
        item["neighbour_groups"] = [segments[int(j)]["group"] for j in row]
    return item


def attach_neighbours(segments: list[dict], neighbours: np.ndarray) -> list[dict]:
    """`partner_item` of every segment with its row of `neighbours` (N, k)."""
    return [partner_item(segments, i, row) for i, (_, row) in enumerate(zip(segments, neighbours, strict=True))]


class NeighbourViews:
    """`views(batch, generator) -> (view_a, view_b)` for `weights.neighbour`: view_a is `pipeline` applied to
    the batch's clips, view_b to one of each clip's neighbours (batch "pair_wave" (B, k, S) and
    "pair_lengths" (B, k) from `audio_collate`), drawn uniformly per clip and step from the generator. With
    "group" (B,) and "pair_group" (B, k) in the batch, each view carries its clips' "group"."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    def __call__(self, batch: dict, generator: torch.Generator) -> tuple[dict, dict]:
        if "pair_wave" not in batch:
            raise KeyError(
                f"weights.neighbour needs batches with 'pair_wave' (clips mined by ssl_modal.audio.neighbours and "
                f"collated by audio_collate); found keys {sorted(batch)}"
            )
        waves, lengths = batch["pair_wave"], batch["pair_lengths"]
        rows = torch.arange(lengths.shape[0], device=lengths.device)
        pick = torch.randint(lengths.shape[1], (lengths.shape[0],), device=lengths.device, generator=generator)
        pair_lengths = lengths[rows, pick]
        pair = {"wave": waves[rows, pick, : int(pair_lengths.max())], "lengths": pair_lengths}
        anchor = {"wave": batch["wave"], "lengths": batch["lengths"]}
        if "pair_group" in batch:  # group ids of both views (neighbour.cluster_positives: cross_group)
            anchor["group"], pair["group"] = batch["group"], batch["pair_group"][rows, pick]
        return self.pipeline(anchor, generator), self.pipeline(pair, generator)


def partner_purity(neighbours: np.ndarray, labels) -> float:
    """Share of (clip, neighbour) pairs whose labels agree: a diagnostic measured after mining."""
    labels = np.asarray([str(v) for v in labels])
    return float((labels[neighbours] == labels[:, None]).mean())
