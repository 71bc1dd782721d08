"""Client vectors pooled over a whole history: `client_vectors(model, sequences, pooling)`.

A client's history is cut into windows (`preprocess.max_length`); each part of `pooling` is one block of the
client vector, concatenated in the order given:

- "last": the encoder's `pooled` vector of each window (the last real GRU state), averaged over the client's
  windows -- a recency-weighted summary of each window;
- "mean" / "max" / "std": the mean, maximum and standard deviation of the encoder's per-event `tokens` (for the
  GRU: the causal state after each event) over EVERY event of the client's history;
- "field_mean": the mean over every event of the encoder's input vectors (`FieldEmbedding`: learned category
  and amount vectors; with `combine: concat` the category part is a linear function of the category shares);
- "outer:<a>:<b>" (e.g. "outer:mcc:hour"): second-order pooling, the mean over every event of the outer product
  of the learned vectors of categorical fields a and b (d_a x d_b values): a learned image of the client's joint
  (a, b) histogram, which no first-order mean carries (which categories the client buys in the morning, at
  which amounts).

"Every event": each event of the history counts once, also with overlapping windows (`window_stride` <
`max_length`), where an event is taken from the earliest window that holds it (the one with the most history
before it), as `features` does. Learned counterparts of the hand-made aggregates (shares, mean amounts), the
pooling options of pytorch-lifestream's sequence encoders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from ssl_modal.core.contract import SSLModel, move_to
from ssl_modal.transactions.config import CLIENT_POOLING, POOLING_PARTS, check_pooling, outer_fields  # noqa: F401


def _first_new(sequences) -> np.ndarray:
    """Per window: the first position not already held by the client's previous window (0 without overlap)."""
    table = sequences.table
    start = table.column("start").to_numpy().astype(np.int64)
    length = pc.list_value_length(table.column("transaction_id")).to_numpy(zero_copy_only=False).astype(np.int64)
    client = np.asarray(table.column("client_id").to_pylist(), dtype=object)
    skip = np.zeros(len(start), np.int64)
    if len(start) > 1:
        same = client[1:] == client[:-1]
        overlap = start[:-1] + length[:-1] - start[1:]
        skip[1:] = np.where(same, np.clip(overlap, 0, None), 0)
    return skip


@torch.no_grad()
def client_vectors(
    model: SSLModel, sequences, pooling=CLIENT_POOLING, *, batch_size: int = 128, progress: bool = False
) -> pd.DataFrame:
    """One row per client (index: client_id as in the SequenceSet, first-seen order): `windows`, `events` and
    the pooled blocks as float32 columns emb_000 ... (see the module docstring)."""
    parts = check_pooling(pooling)
    from ssl_modal.transactions.features import _batches, window_lengths

    outer = {p: pair for p in parts if (pair := outer_fields(p)) is not None}
    fields = model.encoder.embed.cat_fields
    for part, pair in outer.items():
        missing = [f for f in pair if f not in fields]
        if missing:
            raise ValueError(f"pooling '{part}': no categorical field {missing} in the encoder; it has {fields}")

    if len(sequences) == 0:
        raise ValueError("client embeddings got no data (0 windows after preprocessing)")
    model.eval()
    encoder = model.encoder
    device = next(model.parameters()).device
    skip = _first_new(sequences)
    codes, clients = pd.factorize(pd.Series(sequences.table.column("client_id").to_pylist(), dtype=object))
    n = len(clients)
    acc: dict[str, np.ndarray] = {}  # per client (not per window: memory grows with clients only)
    events = np.zeros(n, np.float64)

    def add(name: str, rows: np.ndarray, values: torch.Tensor, how=np.add) -> None:
        if name not in acc:
            acc[name] = np.full((n, values.shape[-1]), -np.inf if how is np.maximum else 0.0, np.float64)
        how.at(acc[name], codes[rows], values.double().cpu().numpy())

    for rows in _batches(sequences, batch_size, progress, "client vectors"):
        batch = move_to(model.collate([sequences[int(i)] for i in rows]), device)
        mask = batch["mask"].bool()
        T = mask.shape[1]
        keep = mask & (torch.arange(T, device=device)[None] >= torch.as_tensor(skip[rows], device=device)[:, None])
        weights = keep.unsqueeze(-1).double()
        np.add.at(events, codes[rows], keep.sum(1).cpu().numpy())
        out = encoder(batch)
        if "last" in parts:
            add("last", rows, out.pooled)
        if "mean" in parts or "std" in parts:
            tokens = out.tokens.double()
            add("sum", rows, (tokens * weights).sum(1))
            if "std" in parts:
                add("sumsq", rows, (tokens * tokens * weights).sum(1))
        if "max" in parts:
            add("max", rows, out.tokens.masked_fill(~keep.unsqueeze(-1), float("-inf")).max(1).values, np.maximum)
        if "field_mean" in parts:
            add("field_sum", rows, (encoder.embed(batch).double() * weights).sum(1))
        for part, (a, b) in outer.items():
            va, vb = (encoder.embed.embedding_of(f)(batch["cat"][f]).double() for f in (a, b))
            add(part, rows, torch.einsum("btd,bte,bt->bde", va, vb, keep.double()).flatten(1))
    windows = np.bincount(codes, minlength=n)
    denom = np.maximum(events, 1.0)[:, None]
    blocks = []
    for part in parts:
        if part == "last":
            blocks.append(acc["last"] / windows[:, None])
        elif part == "mean":
            blocks.append(acc["sum"] / denom)
        elif part == "max":
            blocks.append(acc["max"])
        elif part in outer:
            blocks.append(acc[part] / denom)
        elif part == "std":
            mean = acc["sum"] / denom
            blocks.append(np.sqrt(np.clip(acc["sumsq"] / denom - mean**2, 0.0, None)))
        else:
            blocks.append(acc["field_sum"] / denom)
    emb = np.concatenate(blocks, axis=1).astype(np.float32)
    frame = pd.DataFrame(emb, columns=[f"emb_{i:03d}" for i in range(emb.shape[1])], index=pd.Index(clients))
    frame.insert(0, "events", np.bincount(codes, weights=window_lengths(sequences), minlength=n).astype(np.int64))
    frame.insert(0, "windows", windows.astype(np.int64))
    frame.index.name = "client_id"
    return frame
