"""A data-efficient image tower: a patch dictionary learned by k-means on unlabelled images, plus a trained head.

Coates & Ng (2011): contrast-normalised, ZCA-whitened 6x6 patches clustered by k-means give, with a single layer,
features that beat deep networks trained on few images. Here the dictionary is fitted once on the training images
(no labels, no captions: self-supervised) and then frozen; the head (MLP) and the projection train contrastively.
Because the dictionary is frozen, each image's response map is computed once before training and the head trains
on random windows of it (feature-space crops), which makes a step cost a small MLP forward instead of a convnet.
The head is an MLP on the 2x2-pooled map (`head: mlp`) or a small ResNet on the whole map (`head: conv`); several
augmented pixel views of each training image can be cached (`data.cached_views`, one drawn per step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchTower(nn.Module):
    """`front`: pixels (B, 3, S, S) -> triangle-activated distances to K centroids, pooled to (B, K, grid, grid);
    `head`: a window of that map -> 2x2 average pool -> standardise -> MLP -> (B, width), or (`head: conv`)
    BatchNorm -> 1x1 conv to head_widths[0] -> one BasicBlock per head width (stride 2 after the first) -> global
    average pool -> dropout -> (B, head_widths[-1])."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.patch, self.k, self.grid = cfg.get("patch_size", 6), cfg.get("centroids", 256), cfg.get("grid", 9)
        d = 3 * self.patch**2
        self.register_buffer("patch_mean", torch.zeros(d))
        self.register_buffer("whiten", torch.eye(d))
        self.register_buffer("centroids", torch.randn(self.k, d))  # random until `fit` (the random-init row)
        self.register_buffer("feature_mean", torch.zeros(4 * self.k))
        self.register_buffer("feature_std", torch.ones(4 * self.k))
        hidden, dropout = cfg.get("width", 512), cfg.get("dropout", 0.3)
        self.kind = cfg.get("head", "mlp")
        if self.kind == "mlp":
            self.head_mlp = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(4 * self.k, hidden), nn.GELU(), nn.Dropout(dropout)
            )
            self.width = hidden
        elif self.kind == "conv":
            self.head_conv, self.width = conv_head(self.k, cfg.get("head_widths", [128, 256]), dropout)
        else:
            raise ValueError(f"model.image.head: expected 'mlp' or 'conv', found '{self.kind}'")

    def _patches(self, pixels: Tensor) -> Tensor:
        """Contrast-normalised patches (B, L, 3*p*p)."""
        p = F.unfold(pixels, self.patch).transpose(1, 2)
        p = p - p.mean(-1, keepdim=True)
        return p / (p.var(-1, keepdim=True) + 0.5).sqrt()  # Coates & Ng's 10 (of 255^2), CLIP-normalised pixels

    @torch.no_grad()
    def fit(self, pixels: Tensor, max_patches: int = 100_000, iters: int = 10, seed: int = 0) -> None:
        """Whitening and k-means centroids from unlabelled images (B, 3, S, S); the frozen front is then set."""
        g = torch.Generator().manual_seed(seed)
        patches = torch.cat(
            [self._patches(pixels[i : i + 64]).reshape(-1, self.patch_mean.numel()) for i in range(0, len(pixels), 64)]
        )
        patches = patches[torch.randperm(len(patches), generator=g)[:max_patches]]
        if len(patches) < self.k:
            raise ValueError(
                f"patch dictionary: {len(patches)} patches for {self.k} centroids: expected more "
                f"images or fewer model.image.centroids"
            )
        mean = patches.mean(0)
        e, v = torch.linalg.eigh(torch.cov((patches - mean).T))
        whiten = v @ torch.diag((e + 0.1).rsqrt()) @ v.T
        z = (patches - mean) @ whiten
        cent = z[torch.randperm(len(z), generator=g)[: self.k]].clone()
        for _ in range(iters):
            assign = (z @ cent.T - 0.5 * (cent**2).sum(1)).argmax(1)
            count = torch.bincount(assign, minlength=self.k).float()
            total = torch.zeros_like(cent).index_add_(0, assign, z)
            alive = count > 0
            cent[alive] = total[alive] / count[alive, None]
        self.patch_mean.copy_(mean)
        self.whiten.copy_(whiten)
        self.centroids.copy_(cent)
        pooled = torch.cat([self.pool(self.front(pixels[i : i + 64])) for i in range(0, len(pixels), 64)])
        self.feature_mean.copy_(pooled.mean(0))
        self.feature_std.copy_(pooled.std(0) + 1e-3)

    @torch.no_grad()
    def front(self, pixels: Tensor) -> Tensor:
        """The frozen part: (B, 3, S, S) -> (B, K, grid, grid)."""
        z = (self._patches(pixels) - self.patch_mean) @ self.whiten
        dist = torch.cdist(z, self.centroids[None].expand(len(z), -1, -1))
        act = (dist.mean(-1, keepdim=True) - dist).clamp(min=0)  # "triangle" k-means activation
        side = pixels.shape[-1] - self.patch + 1
        return F.adaptive_avg_pool2d(act.transpose(1, 2).reshape(len(z), self.k, side, side), self.grid)

    def pool(self, maps: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(maps, 2).flatten(1)

    def head(self, maps: Tensor) -> Tensor:
        if self.kind == "conv":
            return self.head_conv(maps)
        return self.head_mlp((self.pool(maps) - self.feature_mean) / self.feature_std)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.head(self.front(pixels))


def conv_head(channels: int, widths: list[int], dropout: float) -> tuple[nn.Module, int]:
    """(trainable convnet on a (B, channels, g, g) map -> (B, widths[-1]), widths[-1]) from torchvision blocks."""
    from torchvision.models.resnet import conv1x1

    from ssl_modal.aligner.towers import resnet_stages

    if not widths:
        raise ValueError("model.image.head_widths: expected at least one width, found []")
    layers: list[nn.Module] = [
        nn.BatchNorm2d(channels),
        conv1x1(channels, widths[0]),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
        *resnet_stages(widths[0], widths, [1] * len(widths), zero_init_residual=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
    ]
    return nn.Sequential(*layers), widths[-1]


def pick_views(maps: Tensor, generator: torch.Generator) -> Tensor:
    """(B, V, K, g, g) cached views -> (B, K, g, g), one view per row drawn from `generator`; 4-D maps unchanged."""
    if maps.dim() == 4:
        return maps
    pick = torch.randint(maps.shape[1], (maps.shape[0],), generator=generator, device=generator.device)
    return maps[torch.arange(maps.shape[0], device=maps.device), pick.to(maps.device)]


def random_windows(maps: Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.6, 1.0)) -> Tensor:
    """Feature-space crops: each map (K, g, g) replaced by a random square window of side scale*g, resized to g.
    (B, V, K, g, g) maps (cached views): one view per row is drawn first."""
    maps = pick_views(maps, generator)
    n, _, g, _ = maps.shape
    draws = torch.rand(n, 3, generator=generator, device=generator.device).cpu()
    out = []
    for i in range(n):
        side = max(2, int(round(g * (scale[0] + (scale[1] - scale[0]) * float(draws[i, 0])))))
        y, x = int(draws[i, 1] * (g - side + 1)), int(draws[i, 2] * (g - side + 1))
        out.append(
            F.interpolate(
                maps[i : i + 1, :, y : y + side, x : x + side], size=(g, g), mode="bilinear", align_corners=False
            )
        )
    return torch.cat(out)
