"""Synthetic batches in the `collate_sequences` format, for encoder/objective tests that need no table.

Field names deliberately clash with Python/torch attribute names ("type", "training", "forward").
"""

from __future__ import annotations

import torch

FIELDS = {
    "mcc": {"kind": "categorical", "vocab_size": 23},
    "amount_bin": {"kind": "categorical", "vocab_size": 11},
    "type": {"kind": "categorical", "vocab_size": 6},
    "training": {"kind": "categorical", "vocab_size": 5},
    "amount": {"kind": "numeric"},
    "time_gap": {"kind": "numeric"},
    "forward": {"kind": "numeric"},
}


def synthetic_batch(batch_size: int = 8, max_len: int = 20, seed: int = 0, min_len: int = 3) -> dict:
    """Padded batch with learnable structure: mcc follows a per-row cycle, amount_bin depends on mcc."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=g)
    lengths[0] = max_len
    T = int(lengths.max())
    mask = torch.arange(T)[None] < lengths[:, None]
    start = torch.randint(0, 20, (batch_size, 1), generator=g)
    mcc = 3 + (start + torch.arange(T)[None]) % 20
    cat = {
        "mcc": mcc,
        "amount_bin": 3 + mcc % 8,
        "type": 3 + (mcc % 3),
        "training": torch.randint(3, 5, (batch_size, T), generator=g),
    }
    cat = {k: v.masked_fill(~mask, 0).long() for k, v in cat.items()}
    num = {
        "amount": (mcc.float() - 12) / 6,
        "time_gap": (mcc % 4).float() - 1.5,
        "forward": torch.randn(batch_size, T, generator=g),
    }
    num = {k: v.masked_fill(~mask, 0.0) for k, v in num.items()}
    return {"cat": cat, "num": num, "mask": mask, "lengths": lengths, "row": torch.arange(batch_size)}


class SyntheticRows(torch.utils.data.Dataset):
    """`n` fixed synthetic windows; items are already batches of one (collate with `cat_batches`)."""

    def __init__(self, n: int = 64, max_len: int = 16, seed: int = 0):
        self.batch = synthetic_batch(n, max_len, seed)

    def __len__(self) -> int:
        return len(self.batch["lengths"])

    def __getitem__(self, i):
        return i


def make_collate(rows: SyntheticRows):
    def collate(idx):
        idx = torch.as_tensor(idx)
        b = rows.batch
        return {
            "cat": {k: v[idx] for k, v in b["cat"].items()},
            "num": {k: v[idx] for k, v in b["num"].items()},
            "mask": b["mask"][idx],
            "lengths": b["lengths"][idx],
            "row": idx,
        }

    return collate
