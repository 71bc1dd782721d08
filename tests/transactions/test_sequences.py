"""Windows by index arithmetic, the Arrow layout of SequenceSet, collate_sequences, to_dataset."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from ssl_modal.transactions import (
    ColumnMapping,
    PreprocessConfig,
    SequenceSet,
    TransactionPreprocessor,
    collate_sequences,
)
from ssl_modal.transactions.sequences import window_bounds

from .tables import COLUMNS, raw_table


def _reference_windows(lengths, max_length, stride):
    """Plain-Python reference of the window rule: starts 0, stride, ... until a window reaches the end."""
    out = []
    for c, n in enumerate(lengths):
        s = 0
        while True:
            out.append((c, s, min(max_length, n - s)))
            if s + max_length >= n:
                break
            s += stride
    return out


@pytest.mark.parametrize("max_length,stride", [(4, 4), (4, 2), (5, 1), (1, 1), (10, 3)])
def test_window_bounds_match_reference(max_length, stride):
    lengths = np.array([1, 3, 4, 5, 9, 12, 2])
    client, start, length = window_bounds(lengths, max_length, stride)
    got = list(zip(client.tolist(), start.tolist(), length.tolist(), strict=True))
    assert got == _reference_windows(lengths, max_length, stride)


def test_windows_cover_each_history_in_order():
    table = raw_table(clients=3, per_client=10)
    pre = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS), max_length=4))
    seq = pre.fit_transform(table)
    assert len(seq) == 3 * 3 and seq.report["windows"] == 9 and seq.report["events"] == 30
    assert seq.table.column("window").to_pylist()[:3] == [0, 1, 2]
    assert seq.table.column("start").to_pylist()[:3] == [0, 4, 8]
    tx = seq.table.column("transaction_id").to_pylist()
    assert tx[:3] == [[f"t000_{i:03d}" for i in r] for r in (range(0, 4), range(4, 8), range(8, 10))]


def test_overlapping_windows_repeat_events_with_their_features():
    table = raw_table(clients=2, per_client=9)
    pre = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS), max_length=4, window_stride=2))
    seq = pre.fit_transform(table)
    starts = seq.table.column("start").to_pylist()
    assert starts == [0, 2, 4, 6, 0, 2, 4, 6] and seq.report["overlapping_windows"]
    full = TransactionPreprocessor.from_state_dict(
        {**pre.state_dict(), "config": {**pre.state_dict()["config"], "max_length": 100, "window_stride": None}}
    )
    whole = full.transform(table)
    mcc_whole = whole.table.column("mcc").to_pylist()[0]
    for w in range(4):
        s = starts[w]
        assert seq.table.column("mcc").to_pylist()[w] == mcc_whole[s : s + 4]
    assert seq.table.column("time_gap").to_pylist()[1][0] == pytest.approx(
        whole.table.column("time_gap").to_pylist()[0][2]
    )


def test_arrow_layout_and_types():
    seq = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS))).fit_transform(raw_table(4, 6))
    schema = seq.table.schema
    assert schema.names[:5] == ["client_id", "window", "start", "transaction_id", "event_time"]
    assert schema.field("client_id").type == pa.string()
    assert schema.field("event_time").type == pa.list_(pa.float64())
    assert schema.field("mcc").type == pa.list_(pa.int32()) and schema.field("amount").type == pa.list_(pa.float32())


def test_getitem_and_collate_pad_with_zeros():
    seq = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS), max_length=7)).fit_transform(
        raw_table(2, 10)
    )
    fields = seq.fields
    items = [seq[i] for i in range(len(seq))]  # windows of 7, 3, 7, 3 events
    batch = collate_sequences(items, fields)
    assert batch["lengths"].tolist() == [7, 3, 7, 3] and batch["row"].tolist() == [0, 1, 2, 3]
    assert batch["mask"].dtype == torch.bool and batch["mask"].sum().item() == 20
    for name, f in fields.items():
        x = (batch["cat"] if f["kind"] == "categorical" else batch["num"])[name]
        assert x.dtype == (torch.long if f["kind"] == "categorical" else torch.float32)
        assert torch.all(x[~batch["mask"]] == 0), name
        np.testing.assert_array_equal(x[1, :3].numpy(), items[1]["fields"][name])
    assert seq[-1]["row"] == len(seq) - 1
    with pytest.raises(IndexError, match="out of range"):
        seq[len(seq)]
    with pytest.raises(ValueError, match="empty batch"):
        collate_sequences([], fields)


def test_sequence_set_infers_fields_from_a_bare_table_and_to_dataset():
    seq = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS))).fit_transform(raw_table(3, 4))
    bare = SequenceSet(seq.table)
    assert list(bare.fields) == list(seq.fields)
    assert bare.fields["amount"] == {"kind": "numeric"} and bare.fields["mcc"]["kind"] == "categorical"
    ds = seq.to_dataset()
    assert len(ds) == len(seq) and ds[0]["transaction_id"] == seq.table.column("transaction_id").to_pylist()[0]
