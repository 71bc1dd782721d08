"""Audio view steps for the joint-embedding objectives (BYOL-A style), declared in the recipe's `views:`.

    views:                                   # each view: these steps in order, drawn independently
      - {name: gain, db: 6}
      - {name: mixup, ratio: 0.4, p: 0.5}    # p: chance the step runs on a batch (core.views)
      - {name: speed, factors: [0.9, 1.1]}
      - {name: crop}                         # random resized crop in time and frequency on log-mel
      - {name: specaugment, p: 0.5}

Waveform steps (gain, mixup, speed, pitch, noise) change {"wave", "lengths"}; log-mel steps (vtlp, crop,
specaugment) change the normalised log-mel that the frontend computes once between the two stages
and caches in the view as "logmel" (the encoder reads it through `features`). Every draw comes from
the generator on the batch's device; within a batch each clip gets its own strength. The steps keep what
a spoken word says and change who says it and how: loudness, background, speaking rate, pitch,
vocal-tract length (formant positions), timing and spectral detail.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

FEATURES_KEY = "logmel"  # = ssl_modal.audio.model.FEATURES_KEY (the encoder's log-mel cache)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> Tensor:
    return low + (high - low) * torch.rand(n, device=device, generator=g)


def _chosen(n: int, p: float, g: torch.Generator, device) -> Tensor:
    """Bool (n,): which clips a step applies to."""
    return torch.rand(n, device=device, generator=g) < p


def real_samples(wave: Tensor, lengths: Tensor) -> Tensor:
    return (torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]).to(wave.dtype)


def rms(wave: Tensor, lengths: Tensor) -> Tensor:
    """(B,) root mean square over each clip's real samples."""
    return ((wave**2).sum(1) / lengths.clamp_min(1).to(wave.dtype)).sqrt().clamp_min(1e-8)


# ---- waveform steps --------------------------------------------------------------------------------
def gain(wave: Tensor, db: Tensor) -> Tensor:
    """Scale clip b by 10 ** (db[b] / 20)."""
    return wave * (10.0 ** (db / 20.0))[:, None]


def mixup(wave: Tensor, lengths: Tensor, partner: Tensor, share: Tensor) -> Tensor:
    """(1 - share) x + share x_partner, the partner rescaled to x's RMS and cut to x's length."""
    other = wave[partner] * (rms(wave, lengths) / rms(wave[partner], lengths[partner]))[:, None]
    return ((1 - share)[:, None] * wave + share[:, None] * other) * real_samples(wave, lengths)


def add_noise(wave: Tensor, lengths: Tensor, snr_db: Tensor, g: torch.Generator) -> Tensor:
    """White noise at `snr_db` (B,) relative to each clip's RMS, on real samples only."""
    noise = torch.randn(wave.shape, device=wave.device, generator=g)
    scale = rms(wave, lengths) / (10.0 ** (snr_db / 20.0))
    return wave + noise * scale[:, None] * real_samples(wave, lengths)


def _regroup(wave: Tensor, lengths: Tensor, groups: Tensor, values: list[float], fn) -> tuple[Tensor, Tensor]:
    """Apply `fn(sub_wave, value) -> sub_wave'` to the clips of each group (groups[b] = index into values,
    -1 = untouched); returns the re-padded batch and the new lengths."""
    outs, new_lengths = list(wave.unbind(0)), lengths.clone()
    for k, value in enumerate(values):
        idx = torch.nonzero(groups == k).flatten()
        if idx.numel() == 0:
            continue
        sub = wave[idx, : int(lengths[idx].max())]
        out, ratio = fn(sub, value)
        for j, b in enumerate(idx.tolist()):
            n = max(1, min(out.shape[1], int(math.ceil(int(lengths[b]) * ratio))))
            outs[b] = out[j, :n]
            new_lengths[b] = n
    width = int(new_lengths.max())
    batch = torch.zeros(wave.shape[0], width, device=wave.device, dtype=wave.dtype)
    for b, w in enumerate(outs):
        n = int(new_lengths[b])
        batch[b, :n] = w[:n]
    return batch, new_lengths


def speed(wave: Tensor, lengths: Tensor, groups: Tensor, factors: list[float], sample_rate: int):
    """Speed perturbation (tempo and pitch together): clip b plays `factors[groups[b]]` times faster."""

    def fn(sub, factor):
        orig = int(round(sample_rate * factor / 100)) * 100  # gcd-friendly rates keep the kernel small
        return torchaudio.functional.resample(sub, orig, sample_rate), sample_rate / orig

    return _regroup(wave, lengths, groups, factors, fn)


def pitch(wave: Tensor, lengths: Tensor, groups: Tensor, semitones: list[float], sample_rate: int):
    """Pitch shift by `semitones[groups[b]]` keeping the duration (torchaudio phase vocoder)."""

    def fn(sub, steps):
        return torchaudio.functional.pitch_shift(sub, sample_rate, steps, n_fft=256), 1.0

    return _regroup(wave, lengths, groups, semitones, fn)


# ---- log-mel steps ---------------------------------------------------------------------------------
def vtlp(x: Tensor, alpha: Tensor) -> Tensor:
    """Warp the mel axis: output bin f reads input bin f / alpha[b] (linear interpolation, edge kept).
    alpha > 1 moves formants up (a shorter vocal tract), < 1 down. x: (B, T, F)."""
    n_mels = x.shape[2]
    src = (torch.arange(n_mels, device=x.device, dtype=x.dtype)[None, :] / alpha[:, None]).clamp(0, n_mels - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp_max(n_mels - 1)
    w = (src - lo.to(x.dtype))[:, None, :]
    take = lambda idx: torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


def crop_boxes(frames: Tensor, n_mels: int, virtual_scale, freq_scale, time_scale, g: torch.Generator) -> Tensor:
    """(B, 4) crop boxes (freq start, height, time start, width) in clip coordinates, BYOL-A's
    RandomResizeCrop: a canvas `virtual_scale` times the clip with the clip at its centre, a crop of
    `freq_scale` x n_mels by `time_scale` x frames (capped at the canvas) at a uniform position on it."""
    b, device = frames.shape[0], frames.device
    length = frames.to(torch.float32)
    canvas_f = n_mels * virtual_scale[0] * torch.ones(b, device=device)
    canvas_t = length * virtual_scale[1]
    h = torch.minimum(_uniform(b, *freq_scale, g, device) * n_mels, canvas_f)
    w = torch.minimum(_uniform(b, *time_scale, g, device) * length, canvas_t)
    i = torch.rand(b, device=device, generator=g) * (canvas_f - h) - (canvas_f - n_mels) / 2
    j = torch.rand(b, device=device, generator=g) * (canvas_t - w) - (canvas_t - length) / 2
    return torch.stack([i, h, j, w], 1)


def resized_crop(x: Tensor, frames: Tensor, boxes: Tensor) -> Tensor:
    """Each clip's box (freq start, height, time start, width) resized back to (its frames, n_mels);
    bilinear, zeros (the normalised mean) outside the clip. x: (B, T, F) with zeros past each clip."""
    b, t_max, n_mels = x.shape
    dtype, device = x.dtype, x.device
    out_t = torch.arange(t_max, device=device, dtype=dtype)[None, :] + 0.5  # (1, T) pixel centres
    out_f = torch.arange(n_mels, device=device, dtype=dtype)[None, :] + 0.5  # (1, F)
    length = frames.to(dtype).clamp_min(1)[:, None]
    src_t = boxes[:, 2:3] + out_t / length * boxes[:, 3:4]  # (B, T) input frames
    src_f = boxes[:, 0:1] + out_f / n_mels * boxes[:, 1:2]  # (B, F) input bins
    grid_t = src_t / t_max * 2 - 1  # align_corners=False
    grid_f = src_f / n_mels * 2 - 1
    grid = torch.stack([grid_f[:, None, :].expand(-1, t_max, -1), grid_t[:, :, None].expand(-1, -1, n_mels)], -1)
    out = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return out


def spec_masks(
    shape: tuple[int, int, int],
    lengths: Tensor,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
    g: torch.Generator,
) -> Tensor:
    """Bool (B, T, F), True = masked: `time_masks` spans of up to `time_width` frames inside each clip and
    `freq_masks` bands of up to `freq_width` bins (SpecAugment)."""
    b, t, f = shape
    device = lengths.device
    mask = torch.zeros(b, t, f, dtype=torch.bool, device=device)
    pos_t, pos_f = torch.arange(t, device=device)[None, :], torch.arange(f, device=device)[None, :]
    for _ in range(time_masks):
        width = torch.randint(time_width + 1, (b,), device=device, generator=g)
        start = (torch.rand(b, device=device, generator=g) * (lengths - width).clamp_min(1)).long()
        mask |= ((pos_t >= start[:, None]) & (pos_t < (start + width)[:, None]))[:, :, None]
    for _ in range(freq_masks):
        width = torch.randint(freq_width + 1, (b,), device=device, generator=g)
        start = (torch.rand(b, device=device, generator=g) * (f - width).clamp_min(1)).long()
        mask |= ((pos_f >= start[:, None]) & (pos_f < (start + width)[:, None]))[:, None, :]
    return mask


# ---- steps (callables `step(batch, generator) -> batch`, see ssl_modal.core.views) -----------------------
def _pair(values, name: str) -> tuple[float, float]:
    values = [float(v) for v in values]
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name}: expected [low, high] with low <= high, found {values}")
    return values[0], values[1]


class WaveStep:
    """A step on {"wave", "lengths"}; it drops a cached log-mel, which no longer matches the wave."""

    stage = "wave"

    def __call__(self, batch: dict, g: torch.Generator) -> dict:
        batch = dict(batch)
        batch.pop(FEATURES_KEY, None)
        wave, lengths = self.apply(batch["wave"], batch["lengths"], g)
        batch["wave"], batch["lengths"] = wave, lengths
        return batch

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in vars(self).items())})"


class Gain(WaveStep):
    """Loudness: each clip scaled by a gain uniform in [-db, +db] dB."""

    def __init__(self, db: float = 6.0):
        self.db = float(db)

    def apply(self, wave, lengths, g):
        return gain(wave, _uniform(wave.shape[0], -self.db, self.db, g, wave.device)), lengths


class Mixup(WaveStep):
    """Background: each clip mixed with another clip of the batch (its share uniform in [0, ratio],
    rescaled to the clip's RMS; BYOL-A mixes in a memory of past clips with ratio 0.4)."""

    def __init__(self, ratio: float = 0.4):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], found {ratio}")
        self.ratio = float(ratio)

    def apply(self, wave, lengths, g):
        n = wave.shape[0]
        if n < 2:
            return wave, lengths
        partner = (torch.arange(n, device=wave.device) + torch.randint(1, n, (n,), device=wave.device, generator=g)) % n
        return mixup(wave, lengths, partner, _uniform(n, 0.0, self.ratio, g, wave.device)), lengths


class Speed(WaveStep):
    """Speaking rate and pitch together: each clip resampled to play `factors[k]` times faster (k uniform)."""

    def __init__(self, factors=(0.9, 0.95, 1.0, 1.05, 1.1), sample_rate: int = 8000):
        self.factors, self.sample_rate = [float(f) for f in factors], int(sample_rate)
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(f"factors must be a non-empty list of positive numbers, found {list(factors)}")

    def apply(self, wave, lengths, g):
        groups = torch.randint(len(self.factors), (wave.shape[0],), device=wave.device, generator=g)
        return speed(wave, lengths, groups, self.factors, self.sample_rate)


class Pitch(WaveStep):
    """Pitch without tempo: each clip shifted by `semitones[k]` (torchaudio phase vocoder; slow on CPU)."""

    def __init__(self, semitones=(-2.0, -1.0, 1.0, 2.0), sample_rate: int = 8000):
        self.semitones, self.sample_rate = [float(s) for s in semitones], int(sample_rate)
        if not self.semitones:
            raise ValueError("semitones must be a non-empty list")

    def apply(self, wave, lengths, g):
        groups = torch.randint(len(self.semitones), (wave.shape[0],), device=wave.device, generator=g)
        return pitch(wave, lengths, groups, self.semitones, self.sample_rate)


class Noise(WaveStep):
    """White noise at an SNR uniform in `snr_db` [low, high] dB, relative to each clip's RMS."""

    def __init__(self, snr_db=(10.0, 40.0)):
        self.snr_db = _pair(snr_db, "snr_db")

    def apply(self, wave, lengths, g):
        return add_noise(wave, lengths, _uniform(wave.shape[0], *self.snr_db, g, wave.device), g), lengths


class LogMelStep:
    """A step on the view's normalised log-mel ("logmel": (x (B, T, F), mask (B, T)))."""

    stage = "logmel"

    def __call__(self, batch: dict, g: torch.Generator) -> dict:
        if FEATURES_KEY not in batch:
            raise KeyError(f"{type(self).__name__}: the view has no log-mel yet; build views with audio_views()")
        x, mask = batch[FEATURES_KEY]
        x = self.apply(x, mask, g) * mask[..., None].to(x.dtype)
        return {**batch, FEATURES_KEY: (x, mask)}

    __repr__ = WaveStep.__repr__


class Vtlp(LogMelStep):
    """Vocal-tract length: the mel axis stretched by a factor uniform in `alpha` [low, high] per clip."""

    def __init__(self, alpha=(0.9, 1.1)):
        self.alpha = _pair(alpha, "alpha")

    def apply(self, x, mask, g):
        return vtlp(x, _uniform(x.shape[0], *self.alpha, g, x.device))


class Crop(LogMelStep):
    """BYOL-A's random resized crop: a box of `freq_scale` x n_mels by `time_scale` x the clip's frames on a
    canvas `virtual_scale` (freq, time) times the clip, resized back to the clip's size."""

    def __init__(self, virtual_scale=(1.0, 1.5), freq_scale=(0.6, 1.5), time_scale=(0.6, 1.5)):
        self.virtual_scale = [float(v) for v in virtual_scale]
        if len(self.virtual_scale) != 2 or min(self.virtual_scale) < 1.0:
            raise ValueError(f"virtual_scale: expected [freq, time] >= 1, found {list(virtual_scale)}")
        self.freq_scale, self.time_scale = _pair(freq_scale, "freq_scale"), _pair(time_scale, "time_scale")

    def apply(self, x, mask, g):
        frames = mask.sum(1)
        boxes = crop_boxes(frames, x.shape[2], self.virtual_scale, self.freq_scale, self.time_scale, g)
        return resized_crop(x, frames, boxes)


class SpecAugment(LogMelStep):
    """SpecAugment masks (set to 0, the normalised mean): time spans and mel bands of random width."""

    def __init__(self, time_masks: int = 2, time_width: int = 10, freq_masks: int = 2, freq_width: int = 6):
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)

    def apply(self, x, mask, g):
        masked = spec_masks(
            tuple(x.shape), mask.sum(1), self.time_masks, self.time_width, self.freq_masks, self.freq_width, g
        )
        return x.masked_fill(masked, 0.0)


STEPS = {
    "gain": Gain,
    "mixup": Mixup,
    "speed": Speed,
    "pitch": Pitch,
    "noise": Noise,
    "vtlp": Vtlp,
    "crop": Crop,
    "specaugment": SpecAugment,
}


class ToLogMel:
    """The boundary between the two stages: the encoder's frontend on the (augmented) wave."""

    stage = "boundary"

    def __init__(self, frontend: nn.Module):
        self.frontend = frontend

    @torch.no_grad()
    def __call__(self, batch: dict, g: torch.Generator) -> dict:
        return {**batch, FEATURES_KEY: self.frontend(batch["wave"], batch["lengths"])}

    def __repr__(self) -> str:
        return "ToLogMel()"


def audio_views(specs: list, frontend: nn.Module, sample_rate: int, where: str = "views"):
    """`views(batch, generator) -> (view_a, view_b)` from the recipe's list of steps: waveform steps
    first, then log-mel steps (ConfigError naming the step otherwise)."""
    from ssl_modal.core.config import ConfigError
    from ssl_modal.core.views import Pipeline, TwoViews, build_pipeline

    specs = [dict(s) if isinstance(s, dict) else s for s in (specs or [])]
    registry = {}
    for name, cls in STEPS.items():  # the frontend's rate, not one written per step
        registry[name] = functools.partial(cls, sample_rate=sample_rate) if name in ("speed", "pitch") else cls
    for i, spec in enumerate(specs):
        if isinstance(spec, dict) and "sample_rate" in spec:
            raise ConfigError(f"{where}[{i}] ({spec.get('name')}): sample_rate comes from frontend.sample_rate")
    steps = build_pipeline(specs, registry, where).steps
    stages = [getattr(s, "step", s).stage for s in steps]
    first_mel = next((i for i, st in enumerate(stages) if st == "logmel"), len(steps))
    late = [i for i in range(first_mel, len(steps)) if stages[i] == "wave"]
    if late:
        raise ConfigError(
            f"{where}[{late[0]}] ({specs[late[0]]['name']}): a waveform step after the log-mel step "
            f"'{specs[first_mel]['name']}' ({where}[{first_mel}]); list waveform steps "
            f"({', '.join(n for n, c in STEPS.items() if c.stage == 'wave')}) first"
        )
    return TwoViews(Pipeline(steps[:first_mel] + [ToLogMel(frontend)] + steps[first_mel:]))
