"""`SequenceSet` (per-client windows as an Arrow table with list columns) and `collate_sequences`.

Table columns: "client_id" (string), "window" (index within the client), "start" (position of the first
event in the client's sorted history), "transaction_id" list, "event_time" list<float64> (epoch seconds,
or days for day offsets), then one list column per field (int32 ids / float32 values).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

META = ("client_id", "window", "start", "transaction_id", "event_time")


def window_bounds(lengths: np.ndarray, max_length: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(client index, start within the client, length) of every window, by index arithmetic.
    Windows start at 0, stride, 2*stride, ... until one reaches the end of the history."""
    lengths = np.asarray(lengths, np.int64)
    n = 1 + np.maximum(0, -(-(lengths - max_length) // stride))
    client = np.repeat(np.arange(len(lengths)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    start = k * stride
    return client, start, np.minimum(max_length, lengths[client] - start)


def _list(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    else:
        arr = pa.array(values) if values.dtype == object else pa.array(values, type=pa.from_numpy_dtype(values.dtype))
    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), arr)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), arr)


def build_windows(
    client_of: np.ndarray,
    lengths: np.ndarray,
    tx: np.ndarray,
    times: np.ndarray,
    columns: dict[str, np.ndarray],
    fields: dict,
    max_length: int,
    stride: int,
    report: dict,
) -> SequenceSet:
    """Cut client histories (rows sorted by client, then time; `lengths` per client) into windows."""
    client, start, length = window_bounds(lengths, max_length, stride)
    first = np.cumsum(lengths) - lengths
    offsets = np.zeros(len(client) + 1, np.int64)
    np.cumsum(length, out=offsets[1:])
    if stride >= max_length:  # non-overlapping: the sorted rows are already the list values
        take = None
    else:
        take = np.repeat(first[client] + start - offsets[:-1], length) + np.arange(offsets[-1])
    window = start // stride
    data = {
        "client_id": pa.array(client_of[client].astype(object), pa.string()),
        "window": pa.array(window.astype(np.int32)),
        "start": pa.array(start.astype(np.int32)),
    }
    for name, values in {"transaction_id": tx, "event_time": times, **columns}.items():
        if take is not None:
            values = values.take(pa.array(take)) if isinstance(values, (pa.Array, pa.ChunkedArray)) else values[take]
        data[name] = _list(values, offsets)
    report.update(windows=int(len(client)), events=int(offsets[-1]), overlapping_windows=bool(stride < max_length))
    return SequenceSet(pa.table(data), report, dict(fields))


@dataclass
class SequenceSet:
    """One row per window. `fields` (name -> kind/vocab_size) defaults to every non-meta list column."""

    table: pa.Table
    report: dict = field(default_factory=dict)
    fields: dict | None = None

    def __post_init__(self):
        if self.fields is None:
            self.fields = {}
            for name in self.table.column_names:
                if name in META:
                    continue
                col = self.table.column(name).combine_chunks()
                if pa.types.is_integer(col.type.value_type):
                    top = col.flatten().to_numpy().max(initial=2)
                    self.fields[name] = {"kind": "categorical", "vocab_size": int(top) + 1}
                else:
                    self.fields[name] = {"kind": "numeric"}
        self._flat: dict | None = None

    def _arrays(self) -> dict:
        if self._flat is None:
            flat = {}
            for name in self.fields:
                col = self.table.column(name).combine_chunks()
                offsets = col.offsets.to_numpy().astype(np.int64)
                flat[name] = (col.values.to_numpy(zero_copy_only=False), offsets)
            self._flat = flat
        return self._flat

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> dict:
        """{"row": i, "fields": {field: 1-D array}, field: array, ...}. The collate reads "fields" (safe for
        any field name); the top-level copies are a convenience (a field named "row" or "fields" only
        appears inside "fields")."""
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range (0..{len(self) - 1})")
        i %= len(self)
        values = {name: v[o[i] : o[i + 1]] for name, (v, o) in self._arrays().items()}
        return {**values, "row": i, "fields": values}

    def to_dataset(self):
        """The windows as a Hugging Face `datasets.Dataset` (same Arrow columns)."""
        import datasets

        return datasets.Dataset(self.table)

    def __repr__(self) -> str:
        clients = self.report.get("clients", "?")
        return f"SequenceSet({len(self)} windows, {clients} clients, fields={list(self.fields)})"


def _event_fields(item: dict) -> dict:
    return item["fields"] if isinstance(item.get("fields"), dict) else {k: v for k, v in item.items() if k != "row"}


def collate_sequences(items: list[dict], fields: dict[str, dict]) -> dict:
    """Pad windows to the longest: {"cat": {field: long (B, T)}, "num": {field: float (B, T)},
    "mask": bool (B, T), "lengths": long (B,), "row": long (B,)}; padding is 0 everywhere."""
    if not items:
        raise ValueError("collate_sequences: empty batch")
    names = list(fields)
    first = _event_fields(items[0]) if isinstance(items[0], dict) else {}
    lacking = [n for n in names if n not in first]
    if lacking:
        keys = sorted(map(str, items[0])) if isinstance(items[0], dict) else f"a {type(items[0]).__name__}"
        raise ValueError(
            f"a transactions model encodes client windows of its fields {names}, but the first item "
            f"lacks {lacking} (found {keys}); for a raw table use "
            "ssl_modal.transactions.client_embeddings(model, table) or `ssl-modal embed`"
        )
    evs = [_event_fields(it) for it in items]
    lengths = np.array([len(ev[names[0]]) for ev in evs], dtype=np.int64)
    T = max(int(lengths.max()), 1)
    mask = np.arange(T)[None, :] < lengths[:, None]
    cat, num = {}, {}
    for name in names:
        kind = fields[name]["kind"]
        out = np.zeros((len(items), T), dtype=np.int64 if kind == "categorical" else np.float32)
        out[mask] = np.concatenate([ev[name] for ev in evs])
        (cat if kind == "categorical" else num)[name] = torch.from_numpy(out)
    return {
        "cat": cat,
        "num": num,
        "mask": torch.from_numpy(mask),
        "lengths": torch.from_numpy(lengths),
        "row": torch.as_tensor([int(it["row"]) for it in items], dtype=torch.long),
    }
