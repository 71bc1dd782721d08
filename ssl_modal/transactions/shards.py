"""Per-client windows as a folder of Parquet shards: written by `ssl-modal preprocess` (pandas or Spark engine),
streamed by the trainer (`data.shards: <folder>` in a recipe), never all in memory.

Folder layout (both engines): `windows/part-*.parquet` (one row per window, whole clients per shard),
`preprocessor.json` (fitted state), `report.json` (preprocessing report with per-field value counts).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from ssl_modal.core.distributed import DistInfo
from ssl_modal.core.streaming import ParquetStream
from ssl_modal.transactions.preprocess import TransactionPreprocessor

log = logging.getLogger("ssl_modal")


def _field_counts(table, fields: dict) -> dict:
    return {
        n: np.bincount(table.column(n).combine_chunks().flatten().to_numpy(), minlength=f["vocab_size"]).tolist()
        for n, f in fields.items()
        if f["kind"] == "categorical"
    }


def write_shards_pandas(
    pre: TransactionPreprocessor, frame: pd.DataFrame, out_dir: str | Path, *, partitions: int = 8, fit: bool = True
) -> dict:
    """The single-machine engine writing the same folder layout (clients hashed into `partitions` shards)."""
    out_dir = Path(out_dir)
    seq = pre.fit_transform(frame) if fit else pre.transform(frame)
    windows = out_dir / "windows"
    windows.mkdir(parents=True, exist_ok=True)
    for old in windows.glob("*.parquet"):
        old.unlink()
    clients = seq.table.column("client_id").to_numpy(zero_copy_only=False)
    bucket = pd.util.hash_array(clients.astype(object)) % np.uint64(partitions)
    for b in range(int(partitions)):
        rows = np.flatnonzero(bucket == b)
        if len(rows):
            pq.write_table(seq.table.take(rows), windows / f"part-{b:05d}.parquet", compression="zstd")
    report = {**seq.report, "field_counts": _field_counts(seq.table, pre.fields)}
    (out_dir / "preprocessor.json").write_text(json.dumps(pre.state_dict()))
    (out_dir / "report.json").write_text(json.dumps(report, default=int, indent=1))
    return report


def preprocess_recipe(
    cfg,
    out_dir: str | Path,
    *,
    engine: str = "pandas",
    master: str = "local[2]",
    partitions: int = 8,
    approx: bool = False,
    driver_memory: str = "2g",
) -> dict:
    """`ssl-modal preprocess`: fit the recipe's preprocessing on `data.table` and write window shards."""
    from ssl_modal.transactions.recipe import preprocess_config, read_frame

    pre = TransactionPreprocessor(preprocess_config(cfg))
    start = time.perf_counter()
    if engine == "pandas":
        report = write_shards_pandas(pre, read_frame(cfg), out_dir, partitions=partitions)
    elif engine == "spark":
        from ssl_modal.transactions.spark import fit_spark, read_spark_table, spark_session, transform_spark

        spark = spark_session(master, driver_memory)
        df = read_spark_table(spark, cfg.data.table)
        if cfg.data.max_rows:
            df = df.limit(int(cfg.data.max_rows))
        fit_spark(pre, df, approx=approx, source=str(cfg.data.table))
        report = transform_spark(pre, df, out_dir, partitions=partitions, source=str(cfg.data.table))
    else:
        raise ValueError(f"--engine: expected 'pandas' or 'spark', found '{engine}'")
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


class WindowShards:
    """A shards folder as a streaming training set: `len()`, `fields`, `preprocessor`, `report`, and the
    trainer's `stream_batches` / `batches_per_epoch` (see `ssl_modal.core.streaming`)."""

    def __init__(self, path: str | Path, *, buffer_size: int = 4096):
        path = Path(path)
        state_file = path / "preprocessor.json"
        if not state_file.exists():
            raise FileNotFoundError(
                f"{path}: no preprocessor.json; expected a folder written by "
                "`ssl-modal preprocess recipe.yaml -o {path}`"
            )
        self.preprocessor = TransactionPreprocessor.from_state_dict(json.loads(state_file.read_text()))
        report_file = path / "report.json"
        self.report = json.loads(report_file.read_text()) if report_file.exists() else {}
        self.fields = self.preprocessor.fields
        self.stream = ParquetStream(path / "windows", list(self.fields), buffer_size=buffer_size)

    def __len__(self) -> int:
        return len(self.stream)

    def batches_per_epoch(self, batch_size: int, world_size: int) -> int:
        return self.stream.batches_per_epoch(batch_size, world_size)

    def stream_batches(self, collate, batch_size: int, info: DistInfo, epoch: int, start_batch: int, seed: int):
        return self.stream.stream_batches(collate, batch_size, info, epoch, start_batch, seed)


def train_from_shards(cfg):
    """Pretrain on `data.shards` (streamed) with the recipe's encoder, objectives and train sections."""
    from ssl_modal.core.trainer import Trainer
    from ssl_modal.transactions.model import build_transactions_model, transactions_model_config

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    data = WindowShards(cfg.data.shards)
    config = transactions_model_config(
        data.preprocessor, cfg.encoder, cfg.objectives, client_pooling=cfg.eval.client_pooling
    )
    counts = data.report.get("field_counts")
    if counts:
        config["field_counts"] = {
            n: list(counts[n])[: int(f["vocab_size"])]
            for n, f in data.fields.items()
            if f["kind"] == "categorical" and n in counts
        }
    torch.manual_seed(cfg.train.seed)
    model = build_transactions_model(config)
    log.info(
        "transactions model from shards %s: %d windows in %d shard(s), fields %s",
        cfg.data.shards,
        len(data),
        len(data.stream.files),
        list(data.fields),
    )
    return Trainer(cfg.train).fit(model, data, model.collate)
