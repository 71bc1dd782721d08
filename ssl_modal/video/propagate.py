"""Label propagation: carry the first frame's mask through a sequence by feature affinity.

For each frame t, every position attends to the positions of the context frames (the first frame plus
the last `context` frames) within `radius` feature cells, keeps the `topk` most similar, and takes the
softmax(similarity / temperature)-weighted mean of their (soft) labels. Features are L2-normalised, so
similarity is cosine. Predicted soft labels become context for later frames; the label maps are upsampled
bilinearly to the frame and arg-maxed.

The affinity is computed block-locally (`local_topk`): the feature grid is cut into `block` x `block` tiles,
each tile is compared only with its context window (tile + `radius` cells on every side, cut out once per frame
with `unfold`), so cost grows with the window, not with the square of the frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_modal.video.colorize import frames_to_lab

FeatureFn = Callable[[Tensor], Tensor]  # uint8 frames (N, H, W, 3) -> features (N, D, h, w)


def local_mask(h: int, w: int, radius: float) -> Tensor:
    """(h*w, h*w) bool: True where two grid cells are within `radius` cells (Euclidean); all True if radius <= 0."""
    if radius <= 0:
        return torch.ones(h * w, h * w, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], -1).float()
    return torch.cdist(pos, pos) <= radius


def propagate_step(
    target: Tensor,
    context: Tensor,
    context_labels: Tensor,
    topk: int,
    temperature: float,
    allowed: Tensor | None = None,
) -> Tensor:
    """Dense reference for one frame (tests and small grids).

    target (N, D) and context (C, N, D) L2-normalised features; context_labels (C, N, K) soft labels;
    allowed (N, N) bool locality mask (same for each context frame). Returns (N, K)."""
    c, n, d = context.shape
    sim = target @ context.reshape(c * n, d).T  # (N, C*N)
    if allowed is not None:
        sim = sim.masked_fill(~allowed.repeat(1, c), float("-inf"))
    k = min(topk, sim.shape[1])
    values, index = sim.topk(k, dim=1)
    weights = torch.nan_to_num(torch.softmax(values / temperature, dim=1))  # -inf -> weight 0
    labels = context_labels.reshape(c * n, -1)
    return (weights.unsqueeze(-1) * labels[index]).sum(1)


class LocalGrid:
    """Tiling of an h x w grid into blocks with their context windows (block + `radius` cells each side).

    `tiles(x)` (K, h, w) -> (B, P, K): the cells of each block; `windows(x)` -> (B, M, K): each block's window
    (cells outside the grid are zero and masked by `bias`); `untile` inverts `tiles`. `bias` (B, P, M) is 0
    where a window cell is inside the grid and within `radius` (Euclidean) of the block cell, -inf elsewhere."""

    def __init__(self, h: int, w: int, radius: float, block: int | None = None):
        if radius > 0:
            self.pad = int(math.floor(radius))
            b = block or 8  # measured: larger blocks repeat fewer window cells, smaller
            # ones compare fewer far cells; 8 was fastest for radius 3-12
            self.bh, self.bw = min(b, h), min(b, w)
        else:
            self.pad, self.bh, self.bw = 0, h, w
        self.h, self.w = h, w
        self.hp, self.wp = -(-h // self.bh) * self.bh, -(-w // self.bw) * self.bw
        inside = self.windows(torch.ones(1, h, w))[..., 0] > 0  # (B, M)
        by, bx = torch.meshgrid(torch.arange(self.bh), torch.arange(self.bw), indexing="ij")
        wy, wx = torch.meshgrid(
            torch.arange(self.bh + 2 * self.pad) - self.pad,
            torch.arange(self.bw + 2 * self.pad) - self.pad,
            indexing="ij",
        )
        dist = torch.cdist(
            torch.stack([by.flatten(), bx.flatten()], -1).float(), torch.stack([wy.flatten(), wx.flatten()], -1).float()
        )  # (P, M)
        near = dist <= radius if radius > 0 else torch.ones_like(dist, dtype=torch.bool)
        self.bias = torch.zeros(inside.shape[0], *near.shape).masked_fill(
            ~(near[None] & inside[:, None]), float("-inf")
        )

    def tiles(self, x: Tensor) -> Tensor:
        k = x.shape[0]
        x = F.pad(x, (0, self.wp - self.w, 0, self.hp - self.h))
        x = x.view(k, self.hp // self.bh, self.bh, self.wp // self.bw, self.bw)
        return x.permute(1, 3, 2, 4, 0).reshape(-1, self.bh * self.bw, k)

    def untile(self, t: Tensor) -> Tensor:
        k = t.shape[-1]
        x = t.view(self.hp // self.bh, self.wp // self.bw, self.bh, self.bw, k).permute(4, 0, 2, 1, 3)
        return x.reshape(k, self.hp, self.wp)[:, : self.h, : self.w]

    def windows(self, x: Tensor) -> Tensor:
        k, p = x.shape[0], self.pad
        x = F.pad(x, (p, self.wp - self.w + p, p, self.hp - self.h + p))
        u = F.unfold(x[None], (self.bh + 2 * p, self.bw + 2 * p), stride=(self.bh, self.bw))[0]  # (K*M, B)
        return u.view(k, -1, u.shape[-1]).permute(2, 1, 0).contiguous()


def local_topk(
    target: Tensor, ctx_feats: Tensor, ctx_labels: Tensor, grid: LocalGrid, topk: int, temperature: float
) -> Tensor:
    """Labels (B, P, K) of one frame's tiles `target` (B, P, D) from the context windows of C frames: ctx_feats
    (B, C, M, D) and ctx_labels (B, C, M, K) (views into the ring buffer of `propagate_maps`). One batched
    matmul gives the similarities of every context cell; cells outside the radius or the grid get -inf."""
    b, c, m, d = ctx_feats.shape
    sim = torch.bmm(target, ctx_feats.reshape(b, c * m, d).transpose(1, 2))  # (B, P, C*M)
    sim = (sim.view(b, -1, c, m) + grid.bias[:, :, None].to(sim.dtype)).view(b, -1, c * m)
    values, index = sim.topk(min(topk, sim.shape[-1]), dim=-1)  # (B, P, k)
    weights = torch.nan_to_num(torch.softmax(values.float() / temperature, dim=-1))
    labels = ctx_labels.reshape(b * c * m, -1)
    flat = index + (torch.arange(b) * (c * m)).view(b, 1, 1)
    return (weights.unsqueeze(-1) * labels[flat]).sum(2)


@torch.no_grad()
def propagate_maps(
    feats: Tensor,
    first: Tensor,
    context: int = 5,
    topk: int = 10,
    radius: float = 12,
    temperature: float = 0.05,
    block: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Soft label maps (T, K, h, w) from features (T, D, h, w) (L2-normalised here) and the first frame's
    soft labels `first` (K, h, w). The context windows live in a ring buffer (slot 0: the first frame; slots
    1..context: the last `context` frames), each cut out once; similarities are computed in `dtype` (bfloat16
    halves the matmul's cost on CPUs with native bf16; the label weights stay float32)."""
    feats = F.normalize(feats.float(), dim=1)
    t, _, h, w = feats.shape
    grid = LocalGrid(h, w, radius, block)
    maps = [first.float()]
    slots = 1 + min(context, t - 1)
    win = grid.windows(feats[0]).to(dtype)
    ring_f = win.new_empty(win.shape[0], slots, *win.shape[1:])
    ring_l = maps[0].new_empty(win.shape[0], slots, win.shape[1], first.shape[0])
    ring_f[:, 0], ring_l[:, 0] = win, grid.windows(maps[0])
    for i in range(1, t):
        n = min(i, slots)  # filled slots: the first frame + up to `context` previous frames
        out = local_topk(grid.tiles(feats[i]).to(dtype), ring_f[:, :n], ring_l[:, :n], grid, topk, temperature)
        maps.append(grid.untile(out))
        if i < t - 1 and slots > 1:
            slot = 1 + (i - 1) % (slots - 1)
            ring_f[:, slot], ring_l[:, slot] = grid.windows(feats[i]).to(dtype), grid.windows(maps[-1])
    return torch.stack(maps)


@torch.no_grad()
def extract(feature_fn: FeatureFn, frames: np.ndarray, chunk: int = 8) -> tuple[Tensor, float]:
    """Features (T, D, h, w) of uint8 frames (T, H, W, 3), `chunk` frames at a time, and the seconds it took."""
    start = time.perf_counter()
    video = torch.as_tensor(frames)
    feats = torch.cat([feature_fn(video[i : i + chunk]).float() for i in range(0, len(video), chunk)])
    return feats, time.perf_counter() - start


@torch.no_grad()
def propagate(
    feature_fn: FeatureFn | None,
    frames: np.ndarray,
    first_mask: np.ndarray,
    context: int = 5,
    topk: int = 10,
    radius: float = 12,
    temperature: float = 0.05,
    chunk: int = 8,
    block: int | None = None,
    features: tuple[Tensor, float] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, float]:
    """Predicted bool masks (T, H, W) for uint8 frames (T, H, W, 3) given the first frame's mask; also the
    propagation speed in frames/s, feature extraction included. `features` = an `extract` result to reuse
    (several settings on the same features); then `feature_fn` is not called and its seconds are counted.
    `dtype`: precision of the similarities (`propagate_maps`)."""
    if first_mask.shape != frames.shape[1:3]:
        raise ValueError(
            f"first mask is {first_mask.shape[1]}x{first_mask.shape[0]} (WxH) but the frames are "
            f"{frames.shape[2]}x{frames.shape[1]}"
        )
    feats, feature_s = features if features is not None else extract(feature_fn, frames, chunk)
    start = time.perf_counter()
    mask = torch.as_tensor(first_mask, dtype=torch.float32)[None, None]
    fg = F.adaptive_avg_pool2d(mask, feats.shape[-2:])[0]
    maps = propagate_maps(feats, torch.cat([1 - fg, fg]), context, topk, radius, temperature, block, dtype)
    full = F.interpolate(maps, size=frames.shape[1:3], mode="bilinear", align_corners=False)
    preds = (full[:, 1] > full[:, 0]).numpy()
    preds[0] = first_mask.astype(bool)
    return preds, len(frames) / max(time.perf_counter() - start + feature_s, 1e-9)


def mix_colour(feats: Tensor, lab: Tensor, weight: float) -> Tensor:
    """Encoder features (N, D, h, w) with pooled Lab colour (N, 3, h', w') mixed in: both L2-normalised per
    cell and concatenated with factors sqrt(1 - weight) and sqrt(weight), so the cosine of two cells is
    (1 - weight) * cosine(features) + weight * cosine(Lab). weight 0 returns `feats`."""
    if weight <= 0:
        return feats
    if lab.shape[-2:] != feats.shape[-2:]:
        lab = F.adaptive_avg_pool2d(lab, feats.shape[-2:])
    return torch.cat(
        [(1 - weight) ** 0.5 * F.normalize(feats.float(), dim=1), weight**0.5 * F.normalize(lab.float(), dim=1)], 1
    )


def lab_tensor(frames: Tensor) -> Tensor:
    """uint8 RGB (N, H, W, 3) -> Lab (N, 3, H, W) roughly centred and scaled to [-1, 1]."""
    lab = frames_to_lab(frames)
    return torch.cat([lab[:, :1] / 50 - 1, lab[:, 1:] / 50], 1)


def lab_patch_features(frames: Tensor, patch: int = 8) -> Tensor:
    """'Raw Lab patches': each stride-`patch` cell is its flattened patch of Lab values:
    (N, 3*patch*patch, ceil(H/patch), ceil(W/patch)). No learning."""
    lab = lab_tensor(frames)
    h, w = lab.shape[-2:]
    lab = F.pad(lab, (0, -w % patch, 0, -h % patch), mode="replicate")
    return F.pixel_unshuffle(lab, patch)


def lab_pooled_features(stride: int = 8) -> FeatureFn:
    """Baseline 'raw Lab pixels': Lab average-pooled over stride x stride cells, (N, 3, ceil(H/s), ceil(W/s))."""
    return lambda frames: F.avg_pool2d(lab_tensor(frames), stride, stride, ceil_mode=True)


def encoder_features(encoder, stride: int | None = None) -> FeatureFn:
    """The encoder's feature map (eval mode). With `stride` below the encoder's own, frames are upsampled by
    encoder.stride / stride first, so one feature cell covers `stride` input pixels."""
    encoder.eval()
    scale = 1 if stride is None else encoder.stride / stride
    if scale == 1:
        return lambda frames: encoder.feature_map(frames)

    def features(frames: Tensor) -> Tensor:
        h, w = frames.shape[1:3]
        x = frames.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
        return encoder.feature_map(x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1))

    return features


def copy_first_frame(frames: np.ndarray, first_mask: np.ndarray) -> np.ndarray:
    """Baseline: the first frame's mask for every frame."""
    return np.repeat(first_mask[None].astype(bool), len(frames), axis=0)
