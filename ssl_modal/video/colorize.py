"""Pure functions of colorization tracking (Vondrick et al. 2018, "Tracking Emerges by Colorizing Videos").

rgb_to_lab -> fit_color_centres (k-means on ab) -> quantize_ab -> pointer (softmax over reference
positions of feature similarity) -> colorization_loss (cross-entropy of pointer-weighted reference colours
against the target's quantised colours). Every function is tested against a naive loop in tests/video.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# sRGB (D65) -> XYZ, and the D65 white point, as in the CIE / skimage definitions.
_RGB2XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """sRGB -> linear RGB: float in [0, 1] by the formula, uint8 (0..255) by a 256-entry table (same values)."""
    if rgb.dtype == torch.uint8:
        table = srgb_to_linear(torch.arange(256, dtype=torch.float32, device=rgb.device) / 255.0)
        return table[rgb.long()]
    rgb = rgb.float()
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB float in [0, 1] (or uint8), channels at dim -3 (..., 3, H, W) -> CIE Lab (L in [0, 100], a/b about
    [-128, 127])."""
    linear = srgb_to_linear(rgb)
    xyz = torch.einsum("ij,...jhw->...ihw", _RGB2XYZ.to(rgb.device), linear)
    xyz = xyz / _WHITE.to(rgb.device).view(3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    L = 116 * f[..., 1:2, :, :] - 16
    a = 500 * (f[..., 0:1, :, :] - f[..., 1:2, :, :])
    b = 200 * (f[..., 1:2, :, :] - f[..., 2:3, :, :])
    return torch.cat([L, a, b], dim=-3)


def frames_to_lab(frames: Tensor) -> Tensor:
    """uint8 RGB frames (..., H, W, 3) -> Lab (..., 3, H, W) float."""
    return rgb_to_lab(frames.movedim(-1, -3))


def fit_color_centres(ab: np.ndarray, k: int = 16, seed: int = 0, max_points: int = 50_000) -> np.ndarray:
    """k-means centres (k, 2) of ab colour values (N, 2), fitted on at most `max_points` random points."""
    from sklearn.cluster import KMeans

    ab = np.asarray(ab, dtype=np.float64).reshape(-1, 2)
    if len(ab) < k:
        raise ValueError(f"k-means of {k} colours needs at least {k} ab values, found {len(ab)}")
    rng = np.random.default_rng(seed)
    if len(ab) > max_points:
        ab = ab[rng.choice(len(ab), max_points, replace=False)]
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(ab)
    return km.cluster_centers_.astype(np.float32)


def quantize_ab(ab: Tensor, centres: Tensor) -> Tensor:
    """Index of the nearest colour centre: ab (..., 2, H, W), centres (K, 2) -> long (..., H, W)."""
    values = ab.movedim(-3, -1)  # (..., H, W, 2)
    dist = ((values.unsqueeze(-2) - centres.to(values)) ** 2).sum(-1)  # (..., H, W, K)
    return dist.argmin(-1)


def pointer(target: Tensor, refs: Tensor, temperature: float = 1.0) -> Tensor:
    """Softmax over reference positions of feature dot products.

    target (B, N, D), refs (B, M, D) -> (B, N, M), each row summing to 1."""
    return torch.softmax(target @ refs.transpose(1, 2) / temperature, dim=-1)


def colorization_loss(
    target: Tensor, refs: Tensor, ref_colors: Tensor, target_colors: Tensor, num_colors: int, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the pointer-predicted colour distribution against the target's colours.

    target (B, N, D) and refs (B, M, D) features; ref_colors (B, M) and target_colors (B, N) colour indices.
    Returns (mean loss, accuracy of the most likely colour)."""
    weights = pointer(target, refs, temperature)  # (B, N, M)
    onehot = F.one_hot(ref_colors, num_colors).to(weights.dtype)  # (B, M, K)
    predicted = weights @ onehot  # (B, N, K)
    log_p = torch.log(predicted.clamp(min=1e-8))
    loss = F.nll_loss(log_p.flatten(0, 1), target_colors.flatten())
    accuracy = (predicted.argmax(-1) == target_colors).float().mean()
    return loss, accuracy
