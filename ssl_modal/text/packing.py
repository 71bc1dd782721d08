"""Packing: whole tokenized texts placed side by side in rows of `max_length` tokens, so a batch
carries (almost) no padding. AG News texts average ~45 tokens: padded to the batch's longest text,
more than half of every batch is padding; packed, over 95 % of the positions are real tokens.

Each text keeps its own [CLS] ... [SEP]; a row records which text every token belongs to in
`segment_ids` (0, 1, 2, ... within the row, -1 at padding). The encoder turns them into a
block-diagonal attention mask (no token attends to another text of its row) and position ids that
restart at every text, so a packed text is encoded exactly as it would be alone (tested).
Texts are placed by online best fit (each text, in a seeded random order, goes to the open row with
the least room that still fits it), which fills rows without reordering by length.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


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
