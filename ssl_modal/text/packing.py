"""Packing: whole tokenized texts placed side by side in rows of `max_length` tokens, so a batch
carries (almost) no padding. AG News texts average ~45 tokens: padded to the batch's longest text,
more than half of every batch is padding; packed, over 95 % of the positions are real tokens.

Each text keeps its own [CLS] ... [SEP]; a row records which text every token belongs to in
`segment_ids` (0, 1, 2, ... within the row, -1 at padding). The encoder turns them into a
block-diagonal attention mask (no token attends to another text of its row) and position ids that
restart at every text, so a packed text is encoded exactly as it would be alone (tested).
Texts are placed by online best fit (each text, in a seeded random order, goes to the open row with
the least room that still fits it), which fills rows without reordering by length. The encoder-side pieces
(`segment_positions`, `block_diagonal_mask`, `segment_pool`) live here too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor


def pack_texts(
    input_ids: Sequence[Sequence[int]], special_tokens_mask: Sequence[Sequence[int]], max_length: int, seed: int = 0
) -> list[dict[str, list[int]]]:
    """Rows of packed texts: dicts with input_ids, special_tokens_mask and segment_ids (one list each)."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, found {max_length}")
    order = list(range(len(input_ids)))
    random.Random(seed).shuffle(order)
    rows: list[list[int]] = []  # text indices per row
    room: list[int] = []  # free positions per row
    by_room: list[list[int]] = [[] for _ in range(max_length + 1)]  # open rows by free positions
    for index in order:
        n = len(input_ids[index])
        if n > max_length:
            raise ValueError(
                f"text {index} has {n} tokens, more than max_length={max_length}: "
                "tokenize with truncation to max_length before packing"
            )
        if n == 0:
            continue
        free = next((r for r in range(n, max_length + 1) if by_room[r]), None)
        if free is None:
            rows.append([])
            room.append(max_length)
            row = len(rows) - 1
        else:
            row = by_room[free].pop()
        rows[row].append(index)
        room[row] -= n
        by_room[room[row]].append(row)
    packed = []
    for members in rows:
        ids, special, segments = [], [], []
        for segment, index in enumerate(members):
            ids.extend(input_ids[index])
            special.extend(special_tokens_mask[index])
            segments.extend([segment] * len(input_ids[index]))
        packed.append({"input_ids": ids, "special_tokens_mask": special, "segment_ids": segments})
    return packed


def fill_ratio(rows: Sequence[dict], max_length: int) -> float:
    """Share of the rows' positions that hold real tokens."""
    return sum(len(r["input_ids"]) for r in rows) / max(1, len(rows) * max_length)


def segment_positions(segment_ids: Tensor) -> Tensor:
    """Position of each token inside its own text of a packed row: (B, T) -> (B, T), 0 at each text's
    start (position resets), 0 at padding (segment id -1)."""
    idx = torch.arange(segment_ids.shape[1], device=segment_ids.device).expand_as(segment_ids)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return torch.where(segment_ids >= 0, idx - first, torch.zeros_like(idx))


def block_diagonal_mask(segment_ids: Tensor) -> Tensor:
    """(B, T) segment ids -> (B, 1, T, T) bool, True where query and key belong to the same text:
    attention never crosses texts packed into one row (padding, id -1, attends only to itself)."""
    same = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)
    pad = segment_ids < 0
    eye = torch.eye(segment_ids.shape[1], dtype=torch.bool, device=segment_ids.device)
    return ((same & ~pad.unsqueeze(1)) | (pad.unsqueeze(2) & eye)).unsqueeze(1)


def segment_pool(tokens: Tensor, segment_ids: Tensor, pooling: str = "mean") -> Tensor:
    """One vector per text of packed rows, in row-major order: (B, T, D), (B, T) -> (N_texts, D).
    "mean": mean over the text's tokens; "cls": its first token."""
    batch, length = segment_ids.shape
    valid = segment_ids >= 0
    width = int(segment_ids.max().item()) + 1 if valid.any() else 1
    global_ids = (torch.arange(batch, device=tokens.device).unsqueeze(1) * width + segment_ids)[valid]
    _, inverse = torch.unique(global_ids, sorted=True, return_inverse=True)
    n = int(inverse.max().item()) + 1 if inverse.numel() else 0
    flat = tokens[valid]
    if pooling == "cls":
        order = torch.arange(flat.shape[0], device=tokens.device)
        first = torch.full((n,), flat.shape[0], dtype=torch.long, device=tokens.device)
        first = first.scatter_reduce(0, inverse, order, reduce="amin")
        return flat[first]
    sums = torch.zeros(n, flat.shape[1], dtype=flat.dtype, device=tokens.device).index_add_(0, inverse, flat)
    counts = torch.bincount(inverse, minlength=n).clamp(min=1).to(flat.dtype)
    return sums / counts.unsqueeze(1)
