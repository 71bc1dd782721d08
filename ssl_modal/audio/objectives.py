"""Audio pretext tasks: masked-frame reconstruction (TERA/Mockingjay) and time-shift classification.

The corruptions are small pure functions (random draws separated from their application, so each
is tested against a naive loop); the two `Objective`s compose them on the batch's device with the
objective's generator. Both read the normalised log-mel from `encoder.features(batch)`, which is
computed once per batch.

Time shift vs order prediction: order prediction shows two (usually non-overlapping) segments and asks
"which came first?" - one bit, solvable from coarse cues such as energy decaying over a word. Here
the second crop overlaps the anchor or not, lies before, on, or after it by one of several distances,
and the classifier must name the exact bin, including "no shift": the encodings must carry where in
the clip each crop's content sits, at the resolution of the bins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_modal.core.contract import Objective

KEEP, ZERO, RANDOM = 0, 1, 2


# ---- masked frames: pure functions ---------------------------------------------------------------
def draw_span_starts(
    lengths: Tensor, max_len: int, fraction: float, span: int, generator: torch.Generator | None = None
) -> Tensor:
    """Bool (B, max_len): span starts. Row b gets round-at-random(fraction * L_b / span) distinct starts
    (at least 1 when L_b > 0), uniform over [0, max(1, L_b - span + 1))."""
    if not 0.0 <= fraction <= 1.0 or span < 1:
        raise ValueError(f"masked_frames: fraction must be in [0, 1] and span >= 1, found {fraction} and {span}")
    device = lengths.device
    b = lengths.shape[0]
    n_valid = (lengths - span + 1).clamp_min(1)
    u = torch.rand(b, device=device, generator=generator)
    n_spans = torch.floor(fraction * lengths.float() / span + u).long().clamp_min(1).minimum(n_valid)
    n_spans = torch.where(lengths > 0, n_spans, torch.zeros_like(n_spans))
    scores = torch.rand(b, max_len, device=device, generator=generator)
    positions = torch.arange(max_len, device=device)[None, :]
    scores = scores.masked_fill(positions >= n_valid[:, None], 2.0)  # invalid starts sort last
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < n_spans[:, None]


def spans_to_mask(starts: Tensor, span: int, lengths: Tensor) -> Tensor:
    """Bool (B, T): every frame within `span` frames from a start (start included), clipped to each length."""
    mask = torch.zeros_like(starts)
    for j in range(span):
        mask[:, j:] |= starts[:, : starts.shape[1] - j]
    return mask & (torch.arange(starts.shape[1], device=starts.device)[None, :] < lengths[:, None])


def draw_frame_actions(
    shape: tuple[int, int],
    lengths: Tensor,
    zero_prob: float,
    random_prob: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(action (B, T) long: KEEP/ZERO/RANDOM with probabilities (1-z-r, z, r), source (B, T) long: a random
    real frame of the same clip, used where action == RANDOM)."""
    if zero_prob < 0 or random_prob < 0 or zero_prob + random_prob > 1:
        raise ValueError(
            f"masked_frames: zero_prob and random_prob must be >= 0 and sum to <= 1, "
            f"found {zero_prob} and {random_prob}"
        )
    u = torch.rand(shape, device=lengths.device, generator=generator)
    action = torch.full(shape, KEEP, dtype=torch.long, device=lengths.device)
    action[u < zero_prob + random_prob] = RANDOM
    action[u < zero_prob] = ZERO
    v = torch.rand(shape, device=lengths.device, generator=generator)
    source = (v * lengths.clamp_min(1)[:, None]).long().clamp_max(shape[1] - 1)
    return action, source


def draw_freq_bands(
    batch: int, n_mels: int, prob: float, max_width: int, generator: torch.Generator | None = None, device=None
) -> Tensor:
    """Bool (B, n_mels): with probability `prob` per clip, one band of 1..max_width adjacent bins."""
    if prob <= 0 or max_width <= 0:
        return torch.zeros(batch, n_mels, dtype=torch.bool, device=device)
    on = torch.rand(batch, device=device, generator=generator) < prob
    width = 1 + (torch.rand(batch, device=device, generator=generator) * min(max_width, n_mels)).long()
    start = (torch.rand(batch, device=device, generator=generator) * (n_mels - width + 1)).long()
    bins = torch.arange(n_mels, device=device)[None, :]
    return on[:, None] & (bins >= start[:, None]) & (bins < (start + width)[:, None])


def apply_frame_corruption(
    x: Tensor, time_mask: Tensor, action: Tensor, source: Tensor, freq_mask: Tensor, frame_mask: Tensor
) -> Tensor:
    """Corrupted copy of x (B, T, F): masked frames zeroed / replaced by frame `source` of the same clip /
    kept per `action`; bands in `freq_mask` (B, F) zeroed on every real frame. `x` is not modified."""
    replacement = torch.gather(x, 1, source[..., None].expand_as(x))
    out = torch.where((time_mask & (action == RANDOM))[..., None], replacement, x)
    out = out.masked_fill((time_mask & (action == ZERO))[..., None], 0.0)
    return out.masked_fill(freq_mask[:, None, :] & frame_mask[..., None], 0.0)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred - target| over the positions where `mask` (broadcastable to pred) is True: the L1 per
    masked frame and mel bin; 0 (with gradient) when nothing is masked."""
    mask = mask.expand_as(pred).to(pred.dtype)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


# ---- time shift: pure functions ------------------------------------------------------------------
def draw_crop_starts(lengths: Tensor, shifts: Tensor, crop: int, generator: torch.Generator | None = None) -> Tensor:
    """Anchor starts (B,) so that both the anchor and the crop at anchor + shift lie inside the clip
    when it is long enough (L >= crop + |shift|); shorter clips get the earliest valid start."""
    lo = (-shifts).clamp_min(0)
    hi = torch.maximum(lengths - crop - shifts.clamp_min(0), lo)
    u = torch.rand(lengths.shape[0], device=lengths.device, generator=generator)
    return lo + (u * (hi - lo + 1).float()).long().clamp_max(hi - lo)


def take_crops(x: Tensor, frame_mask: Tensor, starts: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    """(crops (B, crop, F), mask (B, crop)): frames start..start+crop of each clip; frames past the clip's
    end are padding (zeros, mask False)."""
    idx = starts[:, None] + torch.arange(crop, device=x.device)[None, :]
    inside = idx < x.shape[1]
    safe = idx.clamp_max(x.shape[1] - 1)
    mask = torch.gather(frame_mask, 1, safe) & inside
    crops = torch.gather(x, 1, safe[..., None].expand(-1, -1, x.shape[2]))
    return crops * mask[..., None], mask


# ---- objectives ----------------------------------------------------------------------------------
class MaskedFrames(Objective):
    """Mask contiguous time spans (and optionally a mel band), reconstruct the clean normalised log-mel
    from the encoder's tokens with L1 on masked positions only. Logs loss (L1 per masked frame and bin)
    and masked_fraction (share of real frames in masked spans)."""

    def __init__(
        self,
        dim: int,
        n_mels: int,
        subsample: int,
        fraction: float = 0.15,
        span: int = 7,
        zero_prob: float = 0.8,
        random_prob: float = 0.1,
        freq_mask_prob: float = 0.0,
        freq_mask_width: int = 8,
    ):
        super().__init__()
        self.n_mels, self.subsample = n_mels, subsample
        self.fraction, self.span = float(fraction), int(span)
        self.zero_prob, self.random_prob = float(zero_prob), float(random_prob)
        self.freq_mask_prob, self.freq_mask_width = float(freq_mask_prob), int(freq_mask_width)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, subsample * n_mels))

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        x, frame_mask = encoder.features(batch)
        g = self.rng(x.device)
        b, t, n_mels = x.shape
        lengths = frame_mask.sum(1)
        starts = draw_span_starts(lengths, t, self.fraction, self.span, g)
        time_mask = spans_to_mask(starts, self.span, lengths)
        action, source = draw_frame_actions((b, t), lengths, self.zero_prob, self.random_prob, g)
        freq_mask = draw_freq_bands(b, n_mels, self.freq_mask_prob, self.freq_mask_width, g, x.device)
        corrupted = apply_frame_corruption(x, time_mask, action, source, freq_mask, frame_mask)
        tokens = encoder.encode_frames(corrupted, frame_mask).tokens  # (B, T', D)
        pred = self.head(tokens).reshape(b, -1, n_mels)[:, :t].float()  # back to frame rate
        target_mask = (time_mask[..., None] | freq_mask[:, None, :]) & frame_mask[..., None]
        covered = pred.shape[1]
        if covered < t:  # an encoder that drops a trailing partial window (the CNN's max-pools): not scored
            pred = F.pad(pred, (0, 0, 0, t - covered))
            target_mask = target_mask & (torch.arange(t, device=x.device) < covered)[None, :, None]
        loss = masked_l1(pred, x, target_mask)
        return {"loss": loss, "masked_fraction": time_mask.sum() / frame_mask.sum().clamp_min(1)}


class TimeShift(Objective):
    """Anchor crop + a second crop shifted by one of `shifts` frames; classify the shift bin from the two
    pooled encodings. Clips shorter than crop + max|shift| are padded (the crop runs into padding) or,
    with short_clips="skip", left out of this loss (logged as "skipped" per batch). Logs accuracy."""

    def __init__(self, dim: int, crop_frames: int, shifts: list[int], short_clips: str = "pad"):
        super().__init__()
        if short_clips not in ("pad", "skip"):
            raise ValueError(f"time_shift.short_clips: expected 'pad' or 'skip', found '{short_clips}'")
        if len(set(shifts)) != len(shifts) or len(shifts) < 2:
            raise ValueError(f"time_shift.shifts: need at least 2 distinct values, found {shifts}")
        if crop_frames < 1:
            raise ValueError(f"time_shift.crop_frames must be >= 1, found {crop_frames}")
        self.crop, self.short_clips = int(crop_frames), short_clips
        self.register_buffer("shifts", torch.tensor([int(s) for s in shifts], dtype=torch.long), persistent=False)
        self.needed = self.crop + int(self.shifts.abs().max())  # frames a clip needs for every bin
        self.head = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, len(shifts)))

    def forward(self, encoder, batch: dict) -> dict[str, Tensor]:
        x, frame_mask = encoder.features(batch)
        g = self.rng(x.device)
        lengths = frame_mask.sum(1)
        target = torch.randint(len(self.shifts), (x.shape[0],), device=x.device, generator=g)
        shift = self.shifts[target]
        anchor = draw_crop_starts(lengths, shift, self.crop, g)
        keep = lengths >= self.needed if self.short_clips == "skip" else torch.ones_like(lengths, dtype=torch.bool)
        skipped = (~keep).sum()
        a, am = take_crops(x[keep], frame_mask[keep], anchor[keep], self.crop)
        s, sm = take_crops(x[keep], frame_mask[keep], (anchor + shift)[keep], self.crop)
        if a.shape[0] == 0:  # every clip of the batch too short: a zero loss that still backpropagates
            zero = sum(p.sum() for p in self.head.parameters()) * 0.0
            return {"loss": zero, "accuracy": zero.detach(), "skipped": skipped.float()}
        pooled = encoder.encode_frames(torch.cat([a, s]), torch.cat([am, sm])).pooled
        za, zs = pooled.chunk(2)
        logits = self.head(torch.cat([za, zs, zs - za], dim=-1)).float()
        loss = F.cross_entropy(logits, target[keep])
        accuracy = (logits.detach().argmax(-1) == target[keep]).float().mean()
        return {"loss": loss, "accuracy": accuracy, "skipped": skipped.float()}
