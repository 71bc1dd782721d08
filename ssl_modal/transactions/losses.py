"""Pure pieces of the transaction objectives: losses and vectorised corruptions (no modules, no state).

Every random draw takes an explicit `torch.Generator`; everything runs on the device of its inputs.
Tested against naive loop implementations in tests/transactions/test_losses.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


# ---- losses ------------------------------------------------------------------------------------
def masked_field_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(mean cross-entropy, accuracy) of logits (N, V) for targets (N,); zeros when N == 0."""
    if targets.numel() == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    loss = F.cross_entropy(logits.float(), targets)
    acc = (logits.argmax(-1) == targets).float().mean()
    return loss, acc


def multi_positive_info_nce(z: Tensor, groups: Tensor, temperature: float) -> Tensor:
    """InfoNCE where rows with the same group id are positives of each other (CoLES / SupCon form).

    z: (N, D) L2-normalised embeddings; groups: (N,) ids. For anchor i with positives P(i) (same group,
    not i): loss_i = -mean_{p in P(i)} log(exp(s_ip / t) / sum_{a != i} exp(s_ia / t)); mean over anchors
    that have a positive. With two views per group this is NT-Xent (SimCLR).
    """
    n = z.shape[0]
    sim = (z.float() @ z.float().T) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (groups[:, None] == groups[None, :]) & ~eye
    n_pos = positive.sum(1)
    has = n_pos > 0
    if not has.any():
        return z.sum() * 0.0
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(1) / n_pos.clamp(min=1)
    return -per_anchor[has].mean()


def order_loss(logits: Tensor, labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(binary cross-entropy, accuracy) of corrupted-vs-original logits (B,) over `valid` rows."""
    if not valid.any():
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    x, y = logits[valid].float(), labels[valid].float()
    return F.binary_cross_entropy_with_logits(x, y), ((x > 0).float() == y).float().mean()


def gap_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error of next-event time-gap predictions over `valid` positions."""
    if not valid.any():
        return pred.sum() * 0.0
    return F.mse_loss(pred[valid].float(), target[valid].float())


# ---- corruptions -------------------------------------------------------------------------------
def _spans(lengths: Tensor, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per row a span (start, size) of round(fraction * length) events, at least 2, inside the row."""
    size = (lengths.float() * fraction).round().long().clamp(min=2)
    size = torch.minimum(size, lengths.clamp(min=0))
    room = (lengths - size + 1).clamp(min=1)
    start = (torch.rand(lengths.shape, generator=generator, device=lengths.device) * room).long()
    return start, size


def swap_permutation(lengths: Tensor, T: int, fraction: float, generator: torch.Generator) -> Tensor:
    """(B, T) gather index that swaps two adjacent sub-windows covering `fraction` of each row.

    The span [s, s+size) is cut at a random point c (1 <= c < size): [s, s+c) and [s+c, s+size) trade
    places. Positions outside the span and padding keep their index.
    """
    start, size = _spans(lengths, fraction, generator)
    cut = 1 + (torch.rand(lengths.shape, generator=generator, device=lengths.device) * (size - 1).clamp(min=1)).long()
    cut = torch.minimum(cut, (size - 1).clamp(min=1))
    t = torch.arange(T, device=lengths.device)[None].expand(len(lengths), T)
    s, c, e = start[:, None], (start + cut)[:, None], (start + size)[:, None]
    first, second = (t >= s) & (t < c), (t >= c) & (t < e)
    key = t + torch.where(first, e - c, 0) - torch.where(second, c - s, 0)  # new position of each event
    return torch.argsort(key, dim=1, stable=True)


def shuffle_permutation(lengths: Tensor, T: int, fraction: float, generator: torch.Generator) -> Tensor:
    """(B, T) gather index that randomly permutes a span covering `fraction` of each row."""
    start, size = _spans(lengths, fraction, generator)
    t = torch.arange(T, device=lengths.device)[None].expand(len(lengths), T)
    inside = (t >= start[:, None]) & (t < (start + size)[:, None])
    noise = torch.rand((len(lengths), T), generator=generator, device=lengths.device)
    key = torch.where(inside, start[:, None].float() + noise * (size[:, None].float() - 1).clamp(min=0), t.float())
    return torch.argsort(key, dim=1, stable=True)


def slice_indices(
    lengths: Tensor,
    views: int,
    min_fraction: float,
    max_fraction: float,
    max_events: int | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random contiguous slices, `views` per row: (index (B*V, L), mask (B*V, L), source row (B*V,)).

    Slice length is uniform in [min_fraction, max_fraction] x the row length (at least 1, at most
    `max_events`), start uniform among the positions where it fits; rows repeat view by view.
    """
    device = lengths.device
    rows = torch.arange(len(lengths), device=device).repeat_interleave(views)
    n = lengths[rows].clamp(min=1)
    frac = min_fraction + (max_fraction - min_fraction) * torch.rand(n.shape, generator=generator, device=device)
    size = (frac * n.float()).round().long().clamp(min=1)
    size = torch.minimum(size, n)
    if max_events:
        size = size.clamp(max=int(max_events))
    start = (torch.rand(n.shape, generator=generator, device=device) * (n - size + 1)).long()
    L = int(size.max())
    t = torch.arange(L, device=device)[None]
    mask = t < size[:, None]
    index = torch.where(mask, start[:, None] + t, 0)
    return index, mask, rows


def gather_events(batch: dict, index: Tensor, rows: Tensor | None = None, mask: Tensor | None = None) -> dict:
    """A new batch whose row i, position t is event index[i, t] of batch row rows[i] (default: row i).

    `mask` gives the new real positions (default: the old mask, permuted). Keys other than cat/num/
    num_masked/mask/lengths are dropped, since they describe the old rows.
    """
    rows = torch.arange(index.shape[0], device=index.device) if rows is None else rows

    def take(x: Tensor) -> Tensor:
        return x[rows].gather(1, index)

    out = {"cat": {k: take(v) for k, v in batch["cat"].items()}, "num": {k: take(v) for k, v in batch["num"].items()}}
    if batch.get("num_masked"):
        out["num_masked"] = {k: take(v) for k, v in batch["num_masked"].items()}
    out["mask"] = take(batch["mask"]) if mask is None else mask
    if mask is not None:
        out["cat"] = {k: v.masked_fill(~mask, 0) for k, v in out["cat"].items()}
        out["num"] = {k: v.masked_fill(~mask, 0.0) for k, v in out["num"].items()}
    out["lengths"] = out["mask"].sum(1)
    return out


def hide_fields(batch: dict, cat_hidden: dict[str, Tensor], num_hidden: dict[str, Tensor], mask_id: int) -> dict:
    """A copy of `batch` with categorical ids set to `mask_id` and numeric values to 0 (flagged in
    "num_masked") where the given (B, T) bool tensors are True. The input batch is not modified."""
    out = dict(batch)
    out["cat"] = {k: v.masked_fill(cat_hidden[k], mask_id) if k in cat_hidden else v for k, v in batch["cat"].items()}
    out["num"] = {k: v.masked_fill(num_hidden[k], 0.0) if k in num_hidden else v for k, v in batch["num"].items()}
    flags = dict(batch.get("num_masked") or {})
    for k, hidden in num_hidden.items():
        flags[k] = flags[k] | hidden if k in flags else hidden
    out["num_masked"] = flags
    return out
