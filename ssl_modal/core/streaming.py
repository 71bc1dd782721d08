"""`ParquetStream`: training examples streamed from a folder of Parquet shards, never all in memory.

Each rank of a DDP run reads its own shards (rank r takes shards r, r + world, ... in sorted file order), one
record batch at a time, through a shuffle buffer. The order depends only on (seed, epoch, rank), so the
trainer's saved (epoch, batch_in_epoch) is an exact data position: resuming replays the stream up to it
(reading, not training). Every rank takes the same number of batches per epoch (that of the smallest rank
share), so the ranks step together. Peak memory: the shuffle buffer plus one record batch per open shard.

The trainer recognises a streaming dataset by `stream_batches` / `batches_per_epoch` (see `Trainer.fit`).
Rows are handed out as `{"row": running index, "fields": {column: numpy value}}`: list columns as 1-D arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .distributed import DistInfo


def shard_files(path: str | Path) -> list[Path]:
    """The Parquet shards of a folder (or one file), sorted by name; raise when there are none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Parquet file or folder of shards")
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    if not files:
        raise FileNotFoundError(f"{path}: no *.parquet shards in this folder")
    return files


class ParquetStream:
    """Stream rows of `columns` from Parquet shards with a shuffle buffer of `buffer_size` rows."""

    def __init__(self, path: str | Path, columns: list[str], *, buffer_size: int = 4096, read_rows: int = 1024):
        self.files = shard_files(path)
        self.columns = list(columns)
        self.buffer_size = max(1, int(buffer_size))
        self.read_rows = max(1, int(read_rows))
        self.rows = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
        schema = pq.ParquetFile(self.files[0]).schema_arrow
        missing = [c for c in self.columns if c not in schema.names]
        if missing:
            raise KeyError(f"{self.files[0]}: no column(s) {missing}; columns: {schema.names}")

    def __len__(self) -> int:
        return int(sum(self.rows))

    def rank_files(self, info: DistInfo) -> list[int]:
        if len(self.files) < info.world_size:
            raise ValueError(
                f"{len(self.files)} shard(s) for {info.world_size} processes: every rank needs at "
                "least one shard; write more partitions (ssl-modal preprocess --partitions N)"
            )
        return list(range(info.rank, len(self.files), info.world_size))

    def batches_per_epoch(self, batch_size: int, world_size: int) -> int:
        shares = [sum(self.rows[i] for i in self.rank_files(DistInfo(r, world_size))) for r in range(world_size)]
        return min(shares) // batch_size

    def _rows(self, files: list[int]):
        for i in files:
            handle = pq.ParquetFile(self.files[i])
            for batch in handle.iter_batches(batch_size=self.read_rows, columns=self.columns):
                values = {}
                for name in self.columns:
                    col = batch.column(name)
                    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                        flat = col.values.to_numpy(zero_copy_only=False)
                        offsets = col.offsets.to_numpy()
                        values[name] = [flat[offsets[k] : offsets[k + 1]] for k in range(len(col))]
                    else:
                        values[name] = col.to_pylist()
                for k in range(batch.num_rows):
                    yield {name: values[name][k] for name in self.columns}

    def examples(self, info: DistInfo, epoch: int, seed: int):
        """This rank's rows of one epoch, shuffled: shard order permuted, then a shuffle buffer."""
        rng = np.random.default_rng([seed, epoch, info.rank, 7919])
        files = self.rank_files(info)
        files = [files[j] for j in rng.permutation(len(files))]
        buffer: list = []
        for row in self._rows(files):
            if len(buffer) < self.buffer_size:
                buffer.append(row)
                continue
            j = int(rng.integers(len(buffer)))
            buffer[j], row = row, buffer[j]
            yield row
        while buffer:
            j = int(rng.integers(len(buffer)))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            yield buffer.pop()

    def stream_batches(self, collate, batch_size: int, info: DistInfo, epoch: int, start_batch: int, seed: int):
        """Yield (epoch, index_in_epoch, batch) forever from (epoch, start_batch); the trainer's hook."""
        per_epoch = self.batches_per_epoch(batch_size, info.world_size)
        running = 0
        while True:
            if start_batch >= per_epoch:
                epoch, start_batch = epoch + 1, 0
            stream = self.examples(info, epoch, seed)
            for _ in range(start_batch * batch_size):  # replay up to the saved position
                next(stream)
            for index in range(start_batch, per_epoch):
                items = []
                for _ in range(batch_size):
                    row = next(stream)
                    items.append({"row": running, "fields": row})
                    running += 1
                yield epoch, index, collate(items)
            epoch, start_batch = epoch + 1, 0
