"""Label propagation: carry the first frame's mask through a sequence by feature affinity.

For each frame t, every position attends to the positions of the context frames (the first frame plus
the last `context` frames) within `radius` feature cells, keeps the `topk` most similar, and takes the
softmax(similarity / temperature)-weighted mean of their (soft) labels. Features are L2-normalised, so
similarity is cosine. Predicted soft labels become context for later frames.
"""
from __future__ import annotations

import time
from typing import Callable

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


def propagate_step(target: Tensor, context: Tensor, context_labels: Tensor, topk: int, temperature: float,
                   allowed: Tensor | None = None) -> Tensor:
    """Labels of one frame from its context.

    target (N, D) and context (C, N, D) L2-normalised features; context_labels (C, N, K) soft labels;
    allowed (N, N) bool locality mask (same for each context frame). Returns (N, K)."""
    c, n, d = context.shape
    sim = target @ context.reshape(c * n, d).T                                  # (N, C*N)
    if allowed is not None:
        sim = sim.masked_fill(~allowed.repeat(1, c), float("-inf"))
    k = min(topk, sim.shape[1])
    values, index = sim.topk(k, dim=1)
    weights = torch.softmax(values / temperature, dim=1)                       # -inf -> weight 0
    weights = torch.nan_to_num(weights)
    labels = context_labels.reshape(c * n, -1)
    return (weights.unsqueeze(-1) * labels[index]).sum(1)


@torch.no_grad()
def propagate(feature_fn: FeatureFn, frames: np.ndarray, first_mask: np.ndarray, context: int = 5, topk: int = 10,
              radius: float = 12, temperature: float = 0.05, chunk: int = 8) -> tuple[np.ndarray, float]:
    """Predicted bool masks (T, H, W) for uint8 frames (T, H, W, 3) given the first frame's mask; also the
    propagation speed in frames/s (feature extraction included)."""
    if first_mask.shape != frames.shape[1:3]:
        raise ValueError(f"first mask is {first_mask.shape[1]}x{first_mask.shape[0]} (WxH) but the frames are "
                         f"{frames.shape[2]}x{frames.shape[1]}")
    start = time.perf_counter()
    video = torch.as_tensor(frames)
    feats = torch.cat([feature_fn(video[i:i + chunk]).float() for i in range(0, len(video), chunk)])
    feats = F.normalize(feats, dim=1)
    t, d, h, w = feats.shape
    feats = feats.flatten(2).transpose(1, 2)                                    # (T, hw, D)
    mask = torch.as_tensor(first_mask, dtype=torch.float32)[None, None]
    fg = F.adaptive_avg_pool2d(mask, (h, w)).flatten()
    labels = [torch.stack([1 - fg, fg], -1)]                                    # (hw, 2) per frame
    allowed = local_mask(h, w, radius)
    for i in range(1, t):
        ctx = [0] + list(range(max(1, i - context), i))
        labels.append(propagate_step(feats[i], feats[ctx], torch.stack([labels[j] for j in ctx]), topk,
                                     temperature, allowed))
    grid = torch.stack(labels).transpose(1, 2).reshape(t, 2, h, w)
    full = F.interpolate(grid, size=frames.shape[1:3], mode="bilinear", align_corners=False)
    preds = (full[:, 1] > full[:, 0]).numpy()
    preds[0] = first_mask.astype(bool)
    return preds, t / max(time.perf_counter() - start, 1e-9)


def lab_patch_features(frames: Tensor, patch: int = 8) -> Tensor:
    """Baseline 'raw Lab pixels': each stride-`patch` cell is its flattened patch of Lab values (roughly centred
    and scaled to [-1, 1]): (N, 3*patch*patch, ceil(H/patch), ceil(W/patch)). No learning."""
    lab = frames_to_lab(frames)
    lab = torch.cat([lab[:, :1] / 50 - 1, lab[:, 1:] / 50], 1)
    h, w = lab.shape[-2:]
    lab = F.pad(lab, (0, -w % patch, 0, -h % patch), mode="replicate")
    return F.pixel_unshuffle(lab, patch)


def encoder_features(encoder) -> FeatureFn:
    """The stride-8 feature map of a VideoEncoder (eval mode)."""
    encoder.eval()
    return lambda frames: encoder.feature_map(frames)


def copy_first_frame(frames: np.ndarray, first_mask: np.ndarray) -> np.ndarray:
    """Baseline: the first frame's mask for every frame."""
    return np.repeat(first_mask[None].astype(bool), len(frames), axis=0)
