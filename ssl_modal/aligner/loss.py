"""CLIP's symmetric contrastive loss with group-aware targets, and feature gathering across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def group_targets(row_groups: Tensor, column_groups: Tensor) -> Tensor:
    """Soft targets (rows sum to 1): uniform over the columns of the row's group, zero elsewhere.

    Captions of the same image are positives of each other's image, never negatives.
    """
    positives = (row_groups[:, None] == column_groups[None, :]).float()
    return positives / positives.sum(dim=1, keepdim=True).clamp(min=1.0)


def contrastive_loss(
    image: Tensor,
    text: Tensor,
    all_image: Tensor,
    all_text: Tensor,
    groups: Tensor,
    all_groups: Tensor,
    logit_scale: Tensor,
) -> dict[str, Tensor]:
    """Symmetric cross-entropy of this process's rows against every column of the global batch.

    image/text: (b, D) L2-normalised local features (row i of each is pair i); all_image/all_text: (N, D) the
    global batch (N = b on one process); groups/all_groups: (b,)/(N,) group ids; logit_scale: exp(scale).
    """
    if all_image.shape[0] < 2:
        raise ValueError(
            f"contrastive loss needs at least 2 image-text pairs per (global) batch, found "
            f"{all_image.shape[0]}: set train.batch_size >= 2"
        )
    logits_i2t = logit_scale * image @ all_text.T
    logits_t2i = logit_scale * text @ all_image.T
    targets = group_targets(groups, all_groups)
    loss_i2t = -(targets * F.log_softmax(logits_i2t, dim=1)).sum(dim=1).mean()
    loss_t2i = -(targets * F.log_softmax(logits_t2i, dim=1)).sum(dim=1).mean()
    with torch.no_grad():
        hit_i2t = targets.gather(1, logits_i2t.argmax(dim=1, keepdim=True)) > 0
        hit_t2i = targets.gather(1, logits_t2i.argmax(dim=1, keepdim=True)) > 0
    return {"loss": (loss_i2t + loss_t2i) / 2, "acc_i2t": hit_i2t.float().mean(), "acc_t2i": hit_t2i.float().mean()}


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from every rank (rank order); gradients flow back to each rank's part.

    On one process (or without torch.distributed) this is `x` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_no_grad(x: Tensor) -> Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
