"""Contrastive random walk (CRW, Jabri et al. 2020, "Space-Time Correspondence as a Contrastive Random Walk")
with the tracking augmentations it needs.

Nodes are the cells of each frame's stride-8 feature map (L2-normalised). Transitions between consecutive
frames are softmax(similarity / temperature) with edge dropout; a walk goes forward t=0..k and back to 0
(a palindrome), and its round-trip matrix must be the identity: cross-entropy summed over k = 1..T-1.

Augmentations (`augment_clip`, drawn from the objective's generator on the batch's device): one random
resized crop per clip plus a small independent jitter (shift, scale) per frame, so consecutive views move
like a camera; colour jitter (brightness, contrast, saturation, hue shift) drawn independently per frame, and
grayscale with some probability, so the walk cannot rely on colour alone. Still images make clips of
`clip_len` copies of the image: the per-frame jitter is their motion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_modal.core.contract import Objective


def transition(
    a: Tensor, b: Tensor, temperature: float, edge_drop: float = 0.0, generator: torch.Generator | None = None
) -> Tensor:
    """Row-stochastic transitions (B, N, M) from nodes a (B, N, D) to nodes b (B, M, D); a fraction `edge_drop`
    of edges is removed at random before the softmax."""
    logits = a @ b.transpose(1, 2) / temperature
    if edge_drop > 0:
        drop = torch.rand(logits.shape, generator=generator, device=logits.device) < edge_drop
        logits = logits.masked_fill(drop, -1e4)
    return torch.softmax(logits, dim=-1)


def walk_loss(
    nodes: Tensor, temperature: float = 0.07, edge_drop: float = 0.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """CRW palindrome loss of nodes (B, T, N, D) (L2-normalised): for k = 1..T-1 the walk 0 -> k -> 0 must
    return to its start node; returns (mean cross-entropy over k, round-trip accuracy of the longest walk)."""
    b, t, n, _ = nodes.shape
    if t < 2:
        raise ValueError(f"the random walk needs clips of >= 2 frames, found {t}")
    fwd = [transition(nodes[:, i], nodes[:, i + 1], temperature, edge_drop, generator) for i in range(t - 1)]
    bwd = [transition(nodes[:, i + 1], nodes[:, i], temperature, edge_drop, generator) for i in range(t - 1)]
    target = torch.arange(n, device=nodes.device).repeat(b)
    losses, there = [], None
    for k in range(1, t):
        there = fwd[k - 1] if there is None else there @ fwd[k - 1]  # 0 -> k
        cycle = there
        for j in range(k - 1, -1, -1):
            cycle = cycle @ bwd[j]  # k -> 0
        losses.append(F.nll_loss(torch.log(cycle.clamp(min=1e-20)).flatten(0, 1), target))
    accuracy = (cycle.argmax(-1).flatten() == target).float().mean()
    return torch.stack(losses).mean(), accuracy


def rgb_to_gray(x: Tensor) -> Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def color_jitter(x: Tensor, strength: float, gray_p: float, g: torch.Generator) -> Tensor:
    """Per-image colour jitter of float RGB (N, 3, H, W) in [0, 1]: brightness, contrast and saturation factors
    in [1 - s, 1 + s], a hue rotation of up to s/2 turns (in the YIQ plane), grayscale with probability gray_p."""
    n, dev = x.shape[0], x.device

    def u() -> Tensor:
        return 1 + strength * (2 * torch.rand(n, 1, 1, 1, generator=g, device=dev) - 1)

    x = x * u()
    mean = rgb_to_gray(x).mean((2, 3), keepdim=True)
    x = (x - mean) * u() + mean
    gray = rgb_to_gray(x)
    x = (x - gray) * u() + gray
    angle = math.pi * strength * (2 * torch.rand(n, generator=g, device=dev) - 1)
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(n, 3, 3, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = torch.linalg.inv(yiq) @ rot @ yiq  # (N, 3, 3)
    x = torch.einsum("nij,njhw->nihw", m, x)
    to_gray = torch.rand(n, 1, 1, 1, generator=g, device=dev) < gray_p
    x = torch.where(to_gray, rgb_to_gray(x).expand_as(x), x)
    return x.clamp(0, 1)


def augment_clip(
    frames: Tensor,
    size: tuple[int, int],
    scale: tuple[float, float],
    jitter: float,
    strength: float,
    gray_p: float,
    g: torch.Generator,
) -> Tensor:
    """uint8 clips (B, T, H, W, 3) -> augmented float RGB (B*T, 3, h, w) in [0, 1] (see module doc)."""
    b, t, h, w, _ = frames.shape
    dev = frames.device
    x = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255

    def r(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g, device=dev)

    area = scale[0] + (scale[1] - scale[0]) * r(b, 1)  # clip crop: fraction of the frame
    s = area.sqrt() * (1 + jitter * (2 * r(b, t) - 1))  # per-frame scale jitter
    s = s.clamp(max=1.0)
    centre = (2 * r(b, 1, 2) - 1) + jitter * (2 * r(b, t, 2) - 1)  # relative position, per-frame jitter
    centre = centre.clamp(-1, 1) * (1 - s.unsqueeze(-1))  # crop stays inside the frame
    theta = torch.zeros(b * t, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = s.flatten()
    theta[:, :, 2] = centre.flatten(0, 1)
    grid = F.affine_grid(theta, (b * t, 3, size[0], size[1]), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return color_jitter(x, strength, gray_p, g)


class ContrastiveWalk(Objective):
    """CRW on clips (B, T, H, W, 3) of uint8 frames; the encoder's `feature_map_float` gives the nodes."""

    def __init__(
        self,
        temperature: float = 0.07,
        edge_drop: float = 0.1,
        crop: tuple[int, int] = (96, 96),
        scale: tuple[float, float] = (0.3, 1.0),
        jitter: float = 0.1,
        color_strength: float = 0.4,
        gray_p: float = 0.2,
    ):
        super().__init__()
        self.temperature, self.edge_drop = float(temperature), float(edge_drop)
        self.crop, self.scale, self.jitter = tuple(crop), tuple(scale), float(jitter)
        self.color_strength, self.gray_p = float(color_strength), float(gray_p)

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        frames = batch["frames"]
        b, t = frames.shape[:2]
        g = self.rng(frames.device)
        x = augment_clip(frames, self.crop, self.scale, self.jitter, self.color_strength, self.gray_p, g)
        feats = F.normalize(encoder.feature_map_float(x), dim=1)  # (B*T, D, h, w)
        nodes = feats.flatten(2).transpose(1, 2).reshape(b, t, -1, feats.shape[1])
        loss, acc = walk_loss(nodes, self.temperature, self.edge_drop if self.training else 0.0, g)
        return {"loss": loss, "cycle_accuracy": acc}
