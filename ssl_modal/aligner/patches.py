"""A data-efficient image tower: a patch dictionary learned by k-means on unlabelled images, plus a trained head.

Coates & Ng (2011): contrast-normalised, ZCA-whitened 6x6 patches clustered by k-means give, with a single layer,
features that beat deep networks trained on few images. Here the dictionary is fitted once on the training images
(no labels, no captions: self-supervised) and then frozen; the head (MLP) and the projection train contrastively.
Because the dictionary is frozen, each image's response map is computed once before training and the head trains
on random windows of it (feature-space crops), which makes a step cost a small MLP forward instead of a convnet.
Options: several input scales (one dictionary each), a spatial pyramid of poolings, coarse colour histograms;
`centroids: 0` keeps no dictionary: the map is the image's RGB pixels at grid x grid (the raw-thumbnail baseline).
`sift_scales` adds dictionaries of dense SIFT descriptors (gradient-orientation histograms) beside the raw patches.
The head is an MLP on the pooled map (`head: mlp`) or a small ResNet on the whole map (`head: conv`); several
augmented pixel views of each training image can be cached (`data.cached_views`, one drawn per step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchTower(nn.Module):
    """`front`: pixels (B, 3, S, S) -> triangle-activated distances to K centroids per scale, pooled to
    (B, C, grid, grid) (C = K per scale + colour_bins^3 colour-histogram channels);
    `head`: a window of that map -> spatial pyramid (average pools at each `pyramid` level, default 2x2) ->
    standardise -> MLP -> (B, width), or (`head: conv`) BatchNorm -> 1x1 conv to head_widths[0] -> one BasicBlock
    per head width (stride 2 after the first) -> global average pool -> dropout -> (B, head_widths[-1]).

    `scales` (default [image_size]): input sides each dictionary sees (the pixels, image_size px, resized down),
    one dictionary per scale, so 6x6 patches cover more or less of the image (Coates & Ng's single layer at
    several receptive fields); `pyramid`: the pooling levels (Lazebnik et al. 2006's spatial pyramid)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.patch, self.k, self.grid = cfg.get("patch_size", 6), cfg.get("centroids", 256), cfg.get("grid", 9)
        size = cfg.get("image_size", 32)
        self.scales = list(cfg.get("scales") or [size])
        self.pyramid = list(cfg.get("pyramid") or [2])
        self.colour_bins = cfg.get("colour_bins", 0)
        self.sift_scales = list(cfg.get("sift_scales") or [])
        if any(not self.patch < s <= size for s in self.scales) or any(level < 1 for level in self.pyramid):
            raise ValueError(
                f"model.image: expected scales in ({self.patch}, image_size={size}] and pyramid levels >= 1, "
                f"found scales {self.scales}, pyramid {self.pyramid}"
            )
        if any(not SIFT_PATCH <= s <= size for s in self.sift_scales):
            raise ValueError(
                f"model.image.sift_scales: expected sides in [{SIFT_PATCH}, image_size={size}], "
                f"found {self.sift_scales}"
            )
        # (buffer suffix, input side, descriptor) per dictionary; raw scale 0 keeps the names of models saved before
        # scales existed; centroids 0: no dictionary
        self.dictionaries = [(f"_{i}" if i else "", side, "patches") for i, side in enumerate(self.scales)]
        self.dictionaries += [(f"_sift{i}", side, "sift") for i, side in enumerate(self.sift_scales)]
        self.dictionaries = self.dictionaries if self.k else []
        for suffix, _, descriptor in self.dictionaries:
            d = SIFT_DIM if descriptor == "sift" else 3 * self.patch**2
            self.register_buffer("patch_mean" + suffix, torch.zeros(d))
            self.register_buffer("whiten" + suffix, torch.eye(d))
            self.register_buffer("centroids" + suffix, torch.randn(self.k, d))  # random until `fit` (random-init)
        self.channels = (self.k * len(self.dictionaries) if self.k else 3) + self.colour_bins**3
        features = self.channels * sum(level**2 for level in self.pyramid)
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        hidden, dropout = cfg.get("width", 512), cfg.get("dropout", 0.3)
        self.kind = cfg.get("head", "mlp")
        if self.kind in ("chi2", "mlp+chi2"):  # closed form: kernel ridge regression onto the (locked) text features
            support, self.kernel_width = cfg.get("support", 1), cfg.get("target_dim", 1)
            self.gamma, self.ridge = cfg.get("kernel_gamma", 3.0), cfg.get("ridge", 0.3)
            self.register_buffer("support", torch.rand(support, features))  # random until `fit_head`
            self.register_buffer("dual", torch.randn(support, self.kernel_width))
        if self.kind in ("mlp", "mlp+chi2"):
            self.head_mlp = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(features, hidden), nn.GELU(), nn.Dropout(dropout)
            )
            self.width = hidden
        elif self.kind == "conv":
            self.head_conv, self.width = conv_head(self.channels, cfg.get("head_widths", [128, 256]), dropout)
        elif self.kind == "chi2":
            self.width = self.kernel_width
        else:
            raise ValueError(f"model.image.head: expected 'mlp', 'conv', 'chi2' or 'mlp+chi2', found '{self.kind}'")

    def _dictionary(self, suffix: str) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(getattr(self, name + suffix) for name in ("patch_mean", "whiten", "centroids"))

    def _resize(self, pixels: Tensor, side: int) -> Tensor:
        if pixels.shape[-1] == side:
            return pixels
        return F.interpolate(pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False)

    def _patches(self, pixels: Tensor, descriptor: str = "patches") -> Tensor:
        """Contrast-normalised patches (B, L, 3*p*p), or (`descriptor` "sift") dense SIFT descriptors (B, L, 128)."""
        if descriptor == "sift":
            return dense_sift(pixels, SIFT_PATCH)
        p = F.unfold(pixels, self.patch).transpose(1, 2)
        p = p - p.mean(-1, keepdim=True)
        return p / (p.var(-1, keepdim=True) + 0.5).sqrt()  # Coates & Ng's 10 (of 255^2), CLIP-normalised pixels

    @torch.no_grad()
    def fit(self, pixels: Tensor, max_patches: int = 100_000, iters: int = 10, seed: int = 0) -> None:
        """Whitening and k-means centroids per dictionary from unlabelled images (B, 3, S, S); the front is set."""
        for i, (suffix, side, descriptor) in enumerate(self.dictionaries):
            mean, whiten, cent = self._kmeans(self._resize(pixels, side), descriptor, max_patches, iters, seed + i)
            for buffer, value in zip(self._dictionary(suffix), (mean, whiten, cent), strict=True):
                buffer.copy_(value)
        pooled = torch.cat([self.pool(self.front(pixels[i : i + 64])) for i in range(0, len(pixels), 64)])
        self.feature_mean.copy_(pooled.mean(0))
        self.feature_std.copy_(pooled.std(0) + 1e-3)

    def _kmeans(
        self, pixels: Tensor, descriptor: str, max_patches: int, iters: int, seed: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        patches = torch.cat(
            [self._patches(pixels[i : i + 64], descriptor).flatten(0, 1) for i in range(0, len(pixels), 64)]
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
        return mean, whiten, cent

    @torch.no_grad()
    def front(self, pixels: Tensor) -> Tensor:
        """The frozen part: (B, 3, S, S) -> (B, C, grid, grid)."""
        maps = [] if self.k else [F.adaptive_avg_pool2d(pixels, self.grid)]  # no dictionary: a raw thumbnail
        for suffix, side, descriptor in self.dictionaries:
            mean, whiten, cent = self._dictionary(suffix)
            z = (self._patches(self._resize(pixels, side), descriptor) - mean) @ whiten
            dist = torch.cdist(z, cent[None].expand(len(z), -1, -1))
            act = (dist.mean(-1, keepdim=True) - dist).clamp(min=0)  # "triangle" k-means activation
            n = round(act.shape[1] ** 0.5)  # the descriptors' square grid
            maps.append(F.adaptive_avg_pool2d(act.transpose(1, 2).reshape(len(z), self.k, n, n), self.grid))
        if self.colour_bins:
            maps.append(F.adaptive_avg_pool2d(colour_histogram(pixels, self.colour_bins), self.grid))
        return torch.cat(maps, 1)

    def _histograms(self, maps: Tensor) -> Tensor:
        """Pooled maps as non-negative histograms, each feature scaled by its training mean (head `chi2`)."""
        pooled = self.pool(maps).clamp(min=0)
        return pooled / (self.feature_mean.clamp(min=0) + 1e-6) / pooled.shape[1]

    def kernel_head(self, maps: Tensor) -> Tensor:
        """Head `chi2` (or the kernel half of `mlp+chi2`): maps -> (B, kernel_width) in the text tower's space."""
        return chi2_kernel(self._histograms(maps), self.support, self.gamma) @ self.dual

    @torch.no_grad()
    def fit_head(self, maps: Tensor, targets: Tensor) -> None:
        """Head `chi2`: kernel ridge from the maps (N, C, g, g) of the training images to `targets` (N, width),
        solved in closed form: dual = (K + ridge I)^-1 targets over the chi2 kernel K of the N images."""
        if not hasattr(self, "dual"):
            raise ValueError(f"fit_head: head 'chi2' or 'mlp+chi2' expected, found '{self.kind}'")
        if maps.shape[0] != self.support.shape[0] or targets.shape[1] != self.kernel_width:
            raise ValueError(
                f"fit_head: {self.support.shape[0]} support images and targets of width {self.kernel_width} "
                f"expected, found {maps.shape[0]} maps, targets {tuple(targets.shape)}"
            )
        support = torch.cat([self._histograms(maps[i : i + 256]) for i in range(0, len(maps), 256)])
        kernel = chi2_kernel(support, support, self.gamma).double()
        eye = torch.eye(len(kernel), dtype=kernel.dtype)
        self.support.copy_(support)
        self.dual.copy_(torch.linalg.solve(kernel + self.ridge * eye, targets.double()).float())

    def pool(self, maps: Tensor) -> Tensor:
        return torch.cat([F.adaptive_avg_pool2d(maps, level).flatten(1) for level in self.pyramid], 1)

    def head(self, maps: Tensor) -> Tensor:
        if self.kind == "conv":
            return self.head_conv(maps)
        if self.kind == "chi2":
            return self.kernel_head(maps)
        return self.head_mlp((self.pool(maps) - self.feature_mean) / self.feature_std)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.head(self.front(pixels))


def chi2_kernel(x: Tensor, y: Tensor, gamma: float) -> Tensor:
    """exp(-gamma * sum_f (x_f - y_f)^2 / (x_f + y_f)) between rows of non-negative x (B, F) and y (N, F)."""
    out = torch.empty(len(x), len(y), device=x.device)
    for i in range(0, len(x), 16):  # (16, N, F) at a time: bounded memory
        a, b = x[i : i + 16, None], y[None]
        out[i : i + 16] = ((a - b) ** 2 / (a + b).clamp(min=1e-12)).sum(-1)
    return torch.exp(-gamma * out)


SIFT_DIM, SIFT_PATCH = 128, 16  # 4 x 4 cells x 8 orientations; cells of 4 px


def dense_sift(pixels: Tensor, side: int) -> Tensor:
    """Dense SIFT-like descriptors (Lowe 2004, on a dense grid as in Lazebnik et al. 2006), RootSIFT-normalised
    (Arandjelovic & Zisserman 2012): CLIP-normalised pixels (B, 3, S, S) -> (B, n*n, 128), one descriptor of
    `side` px (4 x 4 cells of side/4 px, 8 orientation bins each, gradient magnitudes shared linearly between the
    two nearest bins) every side/4 px. Flat regions give near-zero descriptors instead of amplified noise."""
    from .data import MEAN, STD

    mean, std = (torch.tensor(v, device=pixels.device).view(1, 3, 1, 1) for v in (MEAN, STD))
    gray = (pixels * std + mean).mean(1, keepdim=True)  # [0, 1] intensities
    gx = F.conv2d(F.pad(gray, (1, 1, 0, 0), mode="replicate"), gray.new_tensor([[[[-0.5, 0.0, 0.5]]]]))
    gy = F.conv2d(F.pad(gray, (0, 0, 1, 1), mode="replicate"), gray.new_tensor([[[[-0.5], [0.0], [0.5]]]]))
    width = 2 * math.pi / 8
    offset = torch.atan2(gy, gx) - torch.arange(8, device=pixels.device).view(1, 8, 1, 1) * width
    offset = torch.remainder(offset + math.pi, 2 * math.pi) - math.pi  # to each bin's centre, in (-pi, pi]
    bins = torch.hypot(gx, gy) * (1 - offset.abs() / width).clamp(min=0)  # (B, 8, S, S)
    cells = F.avg_pool2d(bins, side // 4)  # (B, 8, S/cell, S/cell)
    desc = F.unfold(cells, 4).transpose(1, 2)  # (B, L, 8 * 16)
    return (desc / (desc.sum(-1, keepdim=True) + 0.05)).sqrt()  # L1 then square root: RootSIFT


def colour_histogram(pixels: Tensor, bins: int) -> Tensor:
    """CLIP-normalised pixels (B, 3, S, S) -> one-hot RGB colour bins (B, bins^3, S, S), `bins` levels a channel."""
    from .data import MEAN, STD

    mean, std = (torch.tensor(v, device=pixels.device).view(1, 3, 1, 1) for v in (MEAN, STD))
    level = ((pixels * std + mean).clamp(0, 1) * bins).long().clamp(max=bins - 1)
    index = (level[:, 0] * bins + level[:, 1]) * bins + level[:, 2]
    return F.one_hot(index, bins**3).permute(0, 3, 1, 2).float()


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
