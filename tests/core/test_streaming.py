"""ParquetStream: every row once per epoch, disjoint rank shares, exact replay from a saved position."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ssl_modal.core.distributed import DistInfo
from ssl_modal.core.streaming import ParquetStream


def _write(folder, shards=4, rows=25):
    folder.mkdir()
    for s in range(shards):
        ids = np.arange(s * rows, (s + 1) * rows)
        values = pa.array([list(range(i % 5 + 1)) for i in ids], pa.list_(pa.int32()))
        pq.write_table(pa.table({"id": pa.array(ids), "x": values}), folder / f"part-{s:05d}.parquet", row_group_size=7)
    return folder


def _ids(items):
    return [int(it["id"]) for it in items]


def collate(items):
    return {
        "id": [int(it["fields"]["id"]) for it in items],
        "row": [it["row"] for it in items],
        "x": [it["fields"]["x"].tolist() for it in items],
    }


def test_each_epoch_yields_every_row_once_in_a_new_order(tmp_path):
    stream = ParquetStream(_write(tmp_path / "s"), ["id", "x"], buffer_size=16, read_rows=5)
    assert len(stream) == 100
    one = _ids(stream.examples(DistInfo(), 0, seed=1))
    two = _ids(stream.examples(DistInfo(), 1, seed=1))
    assert sorted(one) == sorted(two) == list(range(100))
    assert one != two and one != sorted(one)
    assert one == _ids(stream.examples(DistInfo(), 0, seed=1))  # deterministic
    row = next(r for r in stream.examples(DistInfo(), 0, seed=1) if int(r["id"]) == 13)
    assert row["x"].tolist() == list(range(13 % 5 + 1))


def test_ranks_read_disjoint_shards_and_step_together(tmp_path):
    stream = ParquetStream(_write(tmp_path / "s", shards=5, rows=20), ["id"], buffer_size=8)
    shares = [set(_ids(stream.examples(DistInfo(r, 2), 0, seed=0))) for r in range(2)]
    assert not shares[0] & shares[1] and len(shares[0] | shares[1]) == 100
    assert stream.batches_per_epoch(8, 2) == 40 // 8  # the smaller share (2 shards) bounds both ranks
    with pytest.raises(ValueError, match="5 shard\\(s\\) for 6 processes"):
        stream.batches_per_epoch(8, 6)


def test_replay_from_a_saved_position_is_exact(tmp_path):
    stream = ParquetStream(_write(tmp_path / "s"), ["id", "x"], buffer_size=16)
    full = stream.stream_batches(collate, 8, DistInfo(), 0, 0, seed=3)
    ref = [next(full) for _ in range(30)]  # 12 batches per epoch: crosses two epoch boundaries
    assert [(e, i) for e, i, _ in ref[:13]] == [(0, i) for i in range(12)] + [(1, 0)]
    again = stream.stream_batches(collate, 8, DistInfo(), 1, 5, seed=3)  # resume at epoch 1, batch 5
    for e, i, batch in ref[17:30]:
        e2, i2, batch2 = next(again)
        assert (e, i, batch["id"], batch["x"]) == (e2, i2, batch2["id"], batch2["x"])


def test_missing_folder_and_column_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such Parquet file or folder"):
        ParquetStream(tmp_path / "nope", ["id"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.parquet shards"):
        ParquetStream(tmp_path / "empty", ["id"])
    with pytest.raises(KeyError, match="no column\\(s\\) \\['y'\\]"):
        ParquetStream(_write(tmp_path / "s"), ["y"])
