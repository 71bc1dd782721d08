"""Frame encoder (ResNet-style CNN on L), the colorization-tracking and frame-order (VCOP) objectives.

`build_video_model(config)` is the checkpoint builder: `config` is a plain dict
{"encoder": {...}, "colorization": {..., "centres": [[a, b], ...]}, "frame_order": {...}}, so the fitted
k-means colour centres travel inside the checkpoint and `load_model` rebuilds the model alone.
Batches hold uint8 RGB frames: "frames" (B, T, H, W, 3) and, for frame order, "order_frames".
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_modal.core.contract import Encoder, EncoderOutput, ModelSpec, Objective, SSLModel
from ssl_modal.video.colorize import colorization_loss, frames_to_lab, quantize_ab, rgb_to_lab
from ssl_modal.video.config import encoder_strides
from ssl_modal.video.walk import ContrastiveWalk

BUILDER = "ssl_modal.video.model:build_video_model"


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


def network_input(rgb: Tensor, channels: str) -> Tensor:
    """Float RGB (N, 3, H, W) in [0, 1] (or uint8) -> the encoder input: "L" (N, 1, H, W) or "Lab" (N, 3, H, W),
    about [-1, 1]."""
    lab = rgb_to_lab(rgb)
    lab = torch.cat([lab[:, :1] / 50.0 - 1.0, lab[:, 1:] / 50.0], 1)
    return lab[:, :1] if channels == "L" else lab


class VideoEncoder(Encoder):
    """Per-frame CNN on L (or Lab: `channels`). `feature_map` is the map at stride prod(strides) (default: each
    of the stem and the stages halves the resolution, stride 2^len(widths)); `forward` gives per-frame vectors as
    tokens (B, T, D) and their mean over frames as the clip embedding."""

    def __init__(
        self,
        widths: list[int],
        blocks: int = 1,
        embed_dim: int = 64,
        channels: str = "L",
        strides: list[int] | None = None,
    ):
        super().__init__()
        if channels not in ("L", "Lab"):
            raise ValueError(f"encoder.channels: expected 'L' or 'Lab', found {channels!r}")
        strides = encoder_strides(widths, strides)
        self.channels = channels
        self.stem = nn.Sequential(
            nn.Conv2d(len(channels), widths[0], 3, strides[0], 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages, cin = [], widths[0]
        for w, s in zip(widths[1:], strides[1:], strict=True):
            stages += [BasicBlock(cin, w, s)] + [BasicBlock(w, w, 1) for _ in range(blocks - 1)]
            cin = w
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Conv2d(cin, embed_dim, 1)
        self.stride = math.prod(strides)
        self.embed_dim = embed_dim

    def feature_map(self, frames: Tensor) -> Tensor:
        """uint8 frames (N, H, W, 3) -> features (N, D, ceil(H/stride), ceil(W/stride))."""
        return self.feature_map_float(frames.permute(0, 3, 1, 2))

    def feature_map_float(self, rgb: Tensor) -> Tensor:
        """Float RGB (N, 3, H, W) in [0, 1] (or uint8) -> features (N, D, ceil(H/stride), ceil(W/stride))."""
        return self.proj(self.stages(self.stem(network_input(rgb, self.channels))))

    def frame_vectors(self, frames: Tensor) -> Tensor:
        """uint8 frames (B, T, H, W, 3) -> spatial means of the feature maps (B, T, D)."""
        b, t = frames.shape[:2]
        return self.feature_map(frames.flatten(0, 1)).mean((-2, -1)).view(b, t, -1)

    def forward(self, batch: dict) -> EncoderOutput:
        tokens = self.frame_vectors(batch["frames"])
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens.mean(1))


class ColorizationTracking(Objective):
    """Reference frames frames[:, :-1] colour the target frames[:, -1] through a softmax pointer over
    stride-8 feature positions; loss = cross-entropy against the target's quantised colours."""

    def __init__(self, centres: list, temperature: float = 1.0):
        super().__init__()
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32).view(-1, 2))
        self.temperature = float(temperature)

    def colors(self, frames: Tensor, grid: tuple[int, int]) -> Tensor:
        """Quantised colour of each feature cell: ab averaged over the cell -> nearest centre (N, h*w)."""
        ab = frames_to_lab(frames)[:, 1:]
        ab = F.adaptive_avg_pool2d(ab, grid)
        return quantize_ab(ab, self.centres).flatten(1)

    def forward(self, encoder: VideoEncoder, batch: dict) -> dict[str, Tensor]:
        frames = batch["frames"]
        b, t = frames.shape[:2]
        if t < 2:
            raise ValueError(f"colorization needs clips of >= 2 frames (references + target), found {t}")
        feats = encoder.feature_map(frames.flatten(0, 1))  # (B*T, D, h, w)
        d, h, w = feats.shape[1:]
        colors = self.colors(frames.flatten(0, 1), (h, w)).view(b, t, h * w)
        feats = feats.view(b, t, d, h * w).transpose(2, 3)  # (B, T, hw, D)
        refs = feats[:, :-1].reshape(b, (t - 1) * h * w, d)
        loss, acc = colorization_loss(
            feats[:, -1], refs, colors[:, :-1].reshape(b, -1), colors[:, -1], len(self.centres), self.temperature
        )
        return {"loss": loss, "color_accuracy": acc}


def permutations(n: int) -> Tensor:
    """All n! orders of range(n) in lexicographic order (class c = row c): (n!, n) long."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


class FrameOrder(Objective):
    """VCOP: shuffle n clips by one of the n! permutations, classify it from pair-wise concatenated clip features.

    A clip's feature is its frames' feature maps average-pooled to a `pool` x `pool` grid (1 = global mean),
    flattened, and averaged over the clip's frames. `pair_diff` appends f_j - f_i to each concatenated pair."""

    def __init__(
        self,
        embed_dim: int,
        num_clips: int = 3,
        clip_len: int = 1,
        hidden: int = 128,
        dropout: float = 0.3,
        pool: int = 1,
        pair_diff: bool = False,
    ):
        super().__init__()
        if num_clips not in (3, 4):
            raise ValueError(f"frame_order.num_clips: expected 3 or 4, found {num_clips}")
        self.num_clips, self.clip_len, self.pool, self.pair_diff = num_clips, clip_len, pool, pair_diff
        self.register_buffer("orders", permutations(num_clips), persistent=False)
        self.pair = nn.Sequential(nn.Linear((3 if pair_diff else 2) * embed_dim * pool * pool, hidden), nn.ReLU())
        n_pairs = num_clips * (num_clips - 1) // 2
        self.classify = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_pairs * hidden, math.factorial(num_clips)))

    def logits(self, clip_features: Tensor) -> Tensor:
        """(B, n, D) clip features in presented order -> (B, n!) permutation logits."""
        f = clip_features
        pairs = [
            torch.cat([f[:, i], f[:, j]] + ([f[:, j] - f[:, i]] if self.pair_diff else []), -1)
            for i, j in itertools.combinations(range(self.num_clips), 2)
        ]
        return self.classify(torch.cat([self.pair(p) for p in pairs], -1))

    def forward(self, encoder: VideoEncoder, batch: dict) -> dict[str, Tensor]:
        frames = batch["order_frames"]  # (B, n*clip_len, H, W, 3)
        b = frames.shape[0]
        if frames.shape[1] != self.num_clips * self.clip_len:
            raise ValueError(
                f"frame order expects {self.num_clips} clips x {self.clip_len} frames, "
                f"found {frames.shape[1]} frames per example"
            )
        maps = encoder.feature_map(frames.flatten(0, 1))  # (B*n*len, D, h, w)
        feats = F.adaptive_avg_pool2d(maps, self.pool).view(b, self.num_clips, self.clip_len, -1).mean(2)
        label = torch.randint(len(self.orders), (b,), generator=self.rng(frames.device), device=frames.device)
        shuffled = torch.gather(feats, 1, self.orders[label].unsqueeze(-1).expand_as(feats))
        logits = self.logits(shuffled)
        return {"loss": F.cross_entropy(logits, label), "accuracy": (logits.argmax(-1) == label).float().mean()}


def collate(items: list[dict]) -> dict[str, Tensor]:
    """Stack uint8 frame arrays: items are {"frames": (T, H, W, 3)[, "order_frames": ...]}."""
    out = {}
    for key in items[0]:
        if key not in ("frames", "order_frames"):
            continue
        shapes = {np.shape(it[key]) for it in items}
        if len(shapes) > 1:
            raise ValueError(
                f"collate: '{key}' arrays differ in shape across the batch ({sorted(shapes)[:3]}); "
                "resize frames to one size (data.size)"
            )
        out[key] = torch.as_tensor(np.stack([it[key] for it in items]))
    if "frames" not in out:
        raise KeyError(f"collate: every item needs 'frames' (uint8 T x H x W x 3), found keys {sorted(items[0])}")
    return out


def build_video_model(config: dict) -> SSLModel:
    """Rebuild from a plain dict (see module doc). An objective with weight 0 is left out."""
    enc = config["encoder"]
    encoder = VideoEncoder(
        list(enc["widths"]),
        int(enc.get("blocks", 1)),
        int(enc["embed_dim"]),
        enc.get("channels", "L"),
        enc.get("strides"),
    )
    objectives, weights = {}, {}
    color = config.get("colorization") or {}
    if color.get("weight", 0):
        objectives["color"] = ColorizationTracking(color["centres"], color.get("temperature", 1.0))
        weights["color"] = float(color["weight"])
    order = config.get("frame_order") or {}
    if order.get("weight", 0):
        objectives["order"] = FrameOrder(
            encoder.embed_dim,
            int(order["num_clips"]),
            int(order.get("clip_len", 1)),
            int(order.get("hidden", 128)),
            float(order.get("dropout", 0.3)),
            int(order.get("pool", 1)),
            bool(order.get("pair_diff", False)),
        )
        weights["order"] = float(order["weight"])
    walk = config.get("walk") or {}
    if walk.get("weight", 0):
        objectives["walk"] = ContrastiveWalk(
            walk["temperature"],
            walk["edge_drop"],
            walk["crop"],
            walk["scale"],
            walk["jitter"],
            walk["color_strength"],
            walk["gray_p"],
        )
        weights["walk"] = float(walk["weight"])
    if not objectives:
        raise ValueError(
            "video model: colorization.weight, frame_order.weight and walk.weight are all 0: nothing to train"
        )
    spec = ModelSpec(builder=BUILDER, config=config, kind="video-" + "+".join(objectives))
    return SSLModel(encoder, objectives, weights, spec=spec, collate=collate)
