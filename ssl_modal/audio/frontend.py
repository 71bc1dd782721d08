"""Batched log-mel frontend on the model's device, with dataset-level mean/std normalisation.

`LogMel(wave, lengths)` -> (features (B, T, n_mels), frame mask (B, T)). The STFT is centred with
zero ("constant") padding, so a clip of `n` samples has exactly `n // hop + 1` frames and those frames
do not change when the clip is right-padded with zeros in a batch: padding never leaks into features.
Normalisation statistics (per mel bin, over every real frame of the training data) come from
`streaming_stats`, a single pass in batches; they are stored in the model's config (plain lists), so
`load_model` rebuilds the same frontend from the checkpoint alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

LOG_FLOOR = 1e-6  # added to mel power before the log


class LogMel(nn.Module):
    """torchaudio MelSpectrogram -> log -> (x - mean) / std per mel bin (-> minus the clip's own mean per bin
    when `utterance_mean_norm`); padded frames set to 0."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        win_length: int,
        hop_length: int,
        n_mels: int,
        f_min: float = 0.0,
        f_max: float | None = None,
        utterance_mean_norm: bool = False,
        mean: list | None = None,
        std: list | None = None,
    ):
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"frontend.win_length ({win_length}) must be <= frontend.n_fft ({n_fft})")
        self.hop_length, self.n_mels = int(hop_length), int(n_mels)
        self.utterance_mean_norm = bool(utterance_mean_norm)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            center=True,
            pad_mode="constant",
            power=2.0,
        )
        for name, values, default in (("mean", mean, 0.0), ("std", std, 1.0)):
            if values is not None and len(values) != n_mels:
                raise ValueError(f"normalisation {name} has {len(values)} values, expected n_mels={n_mels}")
            tensor = torch.tensor(values, dtype=torch.float32) if values is not None else torch.full((n_mels,), default)
            self.register_buffer(name, tensor, persistent=False)  # travels in the config, not the state dict
        self.normalized = mean is not None

    def n_frames(self, lengths: Tensor) -> Tensor:
        """Frames of clips with `lengths` samples."""
        return lengths // self.hop_length + 1

    def log_mel(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised log-mel (B, T, n_mels) and frame mask (B, T); float32 even under autocast."""
        with torch.autocast(wave.device.type, enabled=False):
            spec = self.mel(wave.float()).clamp_min(0.0)  # (B, n_mels, T)
            feats = torch.log(spec + LOG_FLOOR).transpose(1, 2)
        mask = torch.arange(feats.shape[1], device=wave.device)[None, :] < self.n_frames(lengths)[:, None]
        return feats * mask[..., None], mask

    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        feats, mask = self.log_mel(wave, lengths)
        feats = (feats - self.mean) / self.std
        if self.utterance_mean_norm:  # cepstral-mean-style: remove each clip's average spectrum (channel, speaker)
            weights = mask[..., None].to(feats.dtype)
            feats = feats - (feats * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)
        return feats * mask[..., None], mask


@torch.no_grad()
def streaming_stats(
    frontend: LogMel,
    batches: Iterable[dict],
    device: str | torch.device = "cpu",
    progress: bool = True,
    total: int | None = None,
) -> dict:
    """Per-mel-bin mean and std of the log-mel over every real frame, in one pass over `batches`
    (dicts with "wave" and "lengths", as the audio collate makes them). Sums are kept in float64."""
    frontend = frontend.to(device)
    n_mels = frontend.n_mels
    count, total_sum, total_sq = 0, torch.zeros(n_mels, dtype=torch.float64), torch.zeros(n_mels, dtype=torch.float64)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=total, desc="log-mel statistics", unit="batch", leave=False)
    for batch in batches:
        feats, mask = frontend.log_mel(batch["wave"].to(device), batch["lengths"].to(device))
        real = feats[mask].double().cpu()
        count += real.shape[0]
        total_sum += real.sum(0)
        total_sq += (real**2).sum(0)
    if count == 0:
        raise ValueError("log-mel statistics: no frames seen (empty data)")
    mean = total_sum / count
    var = (total_sq / count - mean**2).clamp_min(0.0)
    std = torch.sqrt(var).clamp_min(1e-5)
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std], "frames": int(count)}


def sinusoidal_positions(length: int, dim: int, device=None) -> Tensor:
    """(length, dim) fixed sine/cosine position codes (Vaswani et al.), any length."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


def mfcc_transform(sample_rate: int, n_mfcc: int, n_fft: int, hop_length: int, n_mels: int) -> nn.Module:
    """torchaudio's MFCC with the log-mel settings of the baselines and the neighbour mining."""
    return torchaudio.transforms.MFCC(
        sample_rate=sample_rate, n_mfcc=n_mfcc, melkwargs={"n_fft": n_fft, "hop_length": hop_length, "n_mels": n_mels}
    )


def mfcc_mean_std(
    waves: Iterable[np.ndarray],
    sample_rate: int,
    n_mfcc: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    segments: int = 1,
) -> np.ndarray:
    """Hand-crafted baseline features: per clip, mean and std over frames of `n_mfcc` MFCCs -> (N, 2*n_mfcc);
    with `segments` > 1, mean and std over each of that many equal time parts of the clip, concatenated
    (N, segments*2*n_mfcc): spoken digits differ in the order of their sounds, which one pool discards."""
    if segments < 1:
        raise ValueError(f"mfcc segments must be >= 1, found {segments}")
    mfcc = mfcc_transform(sample_rate, n_mfcc, n_fft, hop_length, n_mels)
    rows = []
    with torch.no_grad():
        for wave in waves:
            m = mfcc(torch.as_tensor(np.asarray(wave, dtype=np.float32)))  # (n_mfcc, T)
            bounds = np.linspace(0, m.shape[1], segments + 1).round().astype(int)
            parts = [
                m[:, a : max(b, a + 1)] if a < m.shape[1] else m[:, -1:]
                for a, b in zip(bounds[:-1], bounds[1:], strict=False)
            ]
            rows.append(torch.cat([torch.cat([p.mean(1), p.std(1, unbiased=False)]) for p in parts]).numpy())
    return np.stack(rows).astype(np.float32)
