"""A BYOL-A-style CNN audio encoder (AudioNTT2020, Niizumi et al. 2021) and the pooling choices.

Log-mel (B, T, n_mels) -> 3 x [Conv2d 3x3, BatchNorm, ReLU, MaxPool 2x2] -> per time step the
(channels x n_mels/8) map flattened -> Linear, ReLU, Dropout, Linear, ReLU -> tokens (B, T/8, dim); with
`stack` (BYOL-A v2) the flattened conv map is concatenated in front of the MLP's output.
Padded frames are zeroed after every block, so padding a clip does not change its tokens in eval mode.

`pool(tokens, mask, mode, segments)`: "mean" over real tokens; "mean+max" (BYOL-A: their sum);
"segments": the mean of each of `segments` equal parts of the clip's real tokens, concatenated
(B, segments x dim): spoken digits differ in the order of their sounds, which a plain mean discards.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssl_modal.core.contract import Encoder, EncoderOutput

POOLING = ("mean", "mean+max", "segments")


def pool(tokens: Tensor, mask: Tensor, mode: str, segments: int = 3) -> Tensor:
    """One vector per clip from tokens (B, T, D) and mask (B, T); zeros for a clip without tokens."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    count = weights.sum(1).clamp(min=1.0)
    mean = (tokens * weights).sum(1) / count
    if mode == "mean":
        return mean
    if mode == "mean+max":
        peak = tokens.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return mean + torch.where(mask.any(1, keepdim=True), peak, torch.zeros_like(peak))
    if mode == "segments":
        length = mask.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
        pos = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
        seg = (pos * segments) // length  # (B, T) segment of each token
        parts = []
        for s in range(segments):
            w = ((seg == s) & mask).to(tokens.dtype).unsqueeze(-1)
            # a clip shorter than `segments` tokens: empty parts take the clip mean
            parts.append(torch.where(w.sum(1) > 0, (tokens * w).sum(1) / w.sum(1).clamp_min(1.0), mean))
        return torch.cat(parts, dim=-1)
    raise ValueError(f"encoder.pooling: expected one of {POOLING}, found '{mode}'")


def pooled_dim(dim: int, mode: str, segments: int) -> int:
    return dim * segments if mode == "segments" else dim


def token_dim(n_mels: int, dim: int, channels: int, stack: bool) -> int:
    """Size of the CNN's tokens: the MLP's `dim`, plus the flattened conv map when `stack` (BYOL-A v2)."""
    return dim + (channels * (n_mels // 8) if stack else 0)


class ConvAudioEncoder(Encoder):
    """Log-mel frontend + BYOL-A's conv stack and MLP; tokens every 8 frames; `pooled` per `pooling`."""

    def __init__(
        self,
        frontend_module: nn.Module,
        n_mels: int,
        dim: int,
        channels: int = 64,
        dropout: float = 0.3,
        pooling: str = "mean+max",
        segments: int = 3,
        stack: bool = False,
    ):
        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"encoder.pooling: expected one of {POOLING}, found '{pooling}'")
        if n_mels < 8:
            raise ValueError(f"encoder.kind=cnn pools the mel axis 3 times by 2: needs n_mels >= 8, found {n_mels}")
        self.frontend = frontend_module
        self.dim, self.subsample, self.pooling, self.segments = int(dim), 8, pooling, int(segments)
        self.stack = bool(stack)  # BYOL-A v2: tokens = [flattened conv map, MLP output]
        self.token_dim = token_dim(n_mels, self.dim, channels, self.stack)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
                nn.MaxPool2d(2, stride=2),
            )
            for i in range(3)
        )
        self.fc = nn.Sequential(
            nn.Linear(channels * (n_mels // 8), dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.ReLU()
        )

    def features(self, batch: dict) -> tuple[Tensor, Tensor]:
        from ssl_modal.audio.model import AudioEncoder

        return AudioEncoder.features(self, batch)

    def encode_frames(self, x: Tensor, frame_mask: Tensor) -> EncoderOutput:
        """Encode normalised log-mel frames (B, T, n_mels) with mask (B, T)."""
        h, mask = x[:, None], frame_mask  # (B, 1, T, F)
        for block in self.blocks:
            h = block(h)
            lengths = mask.sum(1) // 2  # max-pool 2 drops a trailing odd frame
            mask = torch.arange(h.shape[2], device=h.device)[None, :] < lengths[:, None]
            h = h * mask[:, None, :, None].to(h.dtype)
        b, c, t, f = h.shape
        flat = h.permute(0, 2, 1, 3).reshape(b, t, c * f)
        tokens = torch.cat([flat, self.fc(flat)], -1) if self.stack else self.fc(flat)
        tokens = tokens * mask[..., None].to(h.dtype)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pool(tokens, mask, self.pooling, self.segments))

    def forward(self, batch: dict) -> EncoderOutput:
        return self.encode_frames(*self.features(batch))
