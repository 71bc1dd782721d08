"""Scoring on Spark: per-transaction fraud features and per-client embeddings of a Spark DataFrame.

The checkpoint is broadcast once; each Python worker loads it once (cached for the life of the worker). Clients
are hashed into buckets as in `spark.transform_spark`, so each bucket holds whole client histories, and
`groupBy(bucket).applyInArrow` calls the single-machine `features` / `client_embeddings` on it. Every input row
comes back exactly once, keyed by its transaction id (rows the preprocessing drops come back with
scored=False and NaN features, as on one machine).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ssl_modal.transactions.spark import BUCKET, ROW, _user_error, _with_row_numbers

_MODELS: dict = {}  # per Python worker: checkpoint digest -> model


def _model(payload: bytes, digest: str):
    if digest not in _MODELS:
        import torch

        from ssl_modal.core.export import load_model

        torch.set_num_threads(1)  # one Spark task per core
        path = Path(tempfile.gettempdir(), f"ssl_modal_{digest}.pt")
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(payload)
            os.replace(tmp, path)
        _MODELS[digest] = load_model(path)
    return _MODELS[digest]


def _scorer(broadcast, digest: str, kind: str, arrow_schema: pa.Schema, options: dict):
    def run(key, table):
        from ssl_modal.transactions.features import client_embeddings, features

        model = _model(broadcast.value, digest)
        frame = table.to_pandas().sort_values(ROW, kind="stable").reset_index(drop=True)
        rows = frame[ROW].to_numpy()
        frame = frame.drop(columns=[ROW, BUCKET])
        if kind == "features":
            out = features(model, frame, progress=False, **options)  # one row per input row, input order
            if model.preprocessor.config.columns.transaction_id is None:
                out["transaction_id"] = rows  # the row number in the whole DataFrame, not in this bucket
        else:
            out = client_embeddings(model, frame, **options)
        out = pa.Table.from_pandas(out, preserve_index=False)
        return out.select(arrow_schema.names).cast(arrow_schema)

    return run


def score_spark(
    checkpoint: str | Path,
    df,
    *,
    kind: str = "features",
    partitions: int = 8,
    batch_size: int = 128,
    passes: int = 5,
    sample_rows: int = 2000,
):
    """A Spark DataFrame of `features` (one row per input row) or `client_embeddings` (one row per client)
    of `df`, computed by the model in `checkpoint` (model.pt or a run folder)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.features import client_embeddings, features

    if kind not in ("features", "clients"):
        raise ValueError(f"kind: expected 'features' or 'clients', found '{kind}'")
    path = Path(checkpoint) / "model.pt" if Path(checkpoint).is_dir() else Path(checkpoint)
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()[:16]
    model = load_model(path)
    cols = model.preprocessor.config.columns
    cols.check(pd.DataFrame(columns=df.columns), "table")
    options = {"batch_size": batch_size, **({"passes": passes} if kind == "features" else {})}
    df = df.select(*cols.required())
    df = _with_row_numbers(df) if cols.transaction_id is None else df.withColumn(ROW, F.monotonically_increasing_id())
    # the output schema from a dry run on a few rows (the columns do not depend on the rows)
    sample = df.limit(sample_rows).toPandas().drop(columns=[ROW])
    dry = (
        features(model, sample, progress=False, **options)
        if kind == "features"
        else client_embeddings(model, sample, **options)
    )
    schema = from_arrow_schema(pa.Schema.from_pandas(dry, preserve_index=False).remove_metadata())
    broadcast = df.sparkSession.sparkContext.broadcast(payload)
    bucketed = df.withColumn(BUCKET, F.pmod(F.xxhash64(cols.client_id), F.lit(int(partitions))))
    out = (
        bucketed.repartition(int(partitions), BUCKET)
        .groupBy(BUCKET)
        .applyInArrow(_scorer(broadcast, digest, kind, to_arrow_schema(schema), options), schema)
    )
    return out


def write_scores(checkpoint, df, output: str | Path, **kwargs) -> str:
    """`score_spark(...)` written as Parquet to `output` (a folder of part files)."""
    try:
        score_spark(checkpoint, df, **kwargs).write.mode("overwrite").parquet(str(output), compression="zstd")
    except Exception as exc:
        raise _user_error(exc) from None
    return str(output)
