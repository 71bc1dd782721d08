"""The transactions preprocessing on Apache Spark (optional extra `spark`): fit and transform a Spark DataFrame
with the same `TransactionPreprocessor`, writing per-client windows as Parquet shards.

- fit: Spark aggregations feed the same functions as the pandas engine (`vocabulary_from_counts`,
  `amount_edges`, `numeric_stats`), so the fitted state is identical: vocabularies from value counts, amount
  bin edges from a distributed histogram of the parsed amounts (exact; `approx=True` asks
  `percentile_approx` instead, for 10^9-row tables), numeric mean/std from exact (integer) sums.
  Columns are parsed inside Spark by the pandas engine's own parsers (`_parse`), batch by batch.
- transform: clients are hashed into `partitions` buckets; `groupBy(bucket).applyInArrow` hands each bucket
  (whole clients, in input order) to `TransactionPreprocessor.transform`, the single-machine code.

Output folder: `windows/part-*.parquet` (one row per window, the `SequenceSet` columns), `preprocessor.json`
(the fitted state) and `report.json` (the summed transform report, with per-field value counts).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ssl_modal.data.readers import DataValidationError
from ssl_modal.transactions.parsing import factorize_text, parse_amount, parse_time
from ssl_modal.transactions.preprocess import (
    TransactionPreprocessor,
    amount_edges,
    exact_sum,
    numeric_stats,
    squared_deviations,
    vocabulary_from_counts,
)

ROW, BUCKET = "__row", "__bucket"
KINDS = ("seconds", "days")  # parse_time's kinds of event time
SUMMED = (
    "rows_in",
    "rows_out",
    "clients",
    "windows",
    "events",
    "single_event_clients",
    "timestamps_resorted",
    "clients_dropped_min_events",
)


def require_spark() -> None:
    """Raise a clear error when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ImportError("the Spark engine needs pyspark: pip install 'ssl-modal[spark]' (pyspark>=4,<5)") from None
    java = Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not Path(java).exists():
        raise RuntimeError("the Spark engine needs Java 17 or 21 (no 'java' on PATH and JAVA_HOME unset)")


def spark_session(master: str = "local[2]", driver_memory: str = "2g", conf: dict | None = None):
    """A SparkSession for ssl-modal: UTC session time zone, Arrow on, this interpreter for the Python workers."""
    require_spark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName("ssl-modal")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def read_spark_table(spark, path: str | Path):
    """A CSV/Parquet file or folder as a Spark DataFrame. CSV: numbers inferred as pandas does, dates and
    times kept as text (the preprocessor's own parser reads them), only empty fields are null."""
    path = str(path)
    if path.endswith((".csv", ".csv.gz")) or (Path(path).is_dir() and any(Path(path).glob("*.csv*"))):
        from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampNTZType, TimestampType

        opts = dict(header=True, escape='"', multiLine=False)
        inferred = spark.read.csv(path, inferSchema=True, **opts).schema
        text = (DateType, TimestampType, TimestampNTZType)
        schema = StructType(
            [StructField(f.name, StringType() if isinstance(f.dataType, text) else f.dataType) for f in inferred.fields]
        )
        return spark.read.csv(path, schema=schema, **opts)
    return spark.read.parquet(path)


def _user_error(exc: Exception) -> Exception:
    """A DataValidationError raised inside a Python worker, re-raised on the driver with its message."""
    text = str(exc)
    marker = "DataValidationError: "
    if marker in text:
        message = text.split(marker, 1)[1].split("\n", 1)[0]
        return DataValidationError(message + " (row numbers count within one Spark batch)")
    return exc


# ---------------------------------------------------------------------------------------------- fitting
def _parse_batches(cols, source: str, per_row: bool):
    """Parse each Arrow batch with the pandas engine's parsers. per_row: one output row per input row (for
    percentile_approx); else the batch's distinct amounts with their counts (a partial histogram)."""

    def parse(batches):
        for batch in batches:
            frame = batch.to_pandas()
            time, kind = parse_time(frame, cols.time_columns, cols.time_format, source)
            amount = parse_amount(frame[cols.amount], cols.amount_format, cols.amount, source)
            if per_row:
                values, counts = amount, np.ones(len(amount), np.int64)
            else:
                values, counts = np.unique(amount, return_counts=True)
            tod = bool(np.any(np.mod(time, 86400.0)))
            yield pa.RecordBatch.from_pydict(
                {
                    "amount": values,
                    "n": counts.astype(np.int64),
                    "tod": np.full(len(values), tod),
                    "kind": np.full(len(values), KINDS.index(kind), np.int32),
                }
            )

    return parse


def _sums(cols, source: str, means: list | None):
    """Per batch and numeric column: exact sum of the finite values (or of their squared deviations from the
    column's mean), as text."""

    def run(batches):
        for batch in batches:
            frame = batch.to_pandas()
            out = {"i": [], "n": [], "num": [], "den": []}
            for i, c in enumerate(cols.numeric):
                v = parse_amount(frame[c], None, c, source, role="numeric", allow_missing=True)
                v = v[np.isfinite(v)]
                s = exact_sum(v if means is None else squared_deviations(v, means[i]))
                for key, value in zip(out, (i, len(v), str(s.numerator), str(s.denominator)), strict=True):
                    out[key].append(value)
            yield pa.RecordBatch.from_pydict(out)

    return run


def _totals(frame, k: int) -> list[tuple[int, Fraction]]:
    out = [(0, Fraction(0))] * k
    for r in frame.collect():
        n, s = out[r["i"]]
        out[r["i"]] = (n + r["n"], s + Fraction(int(r["num"]), int(r["den"])))
    return out


def _value_counts(df, columns: list[str]) -> list[tuple[pd.Series, np.ndarray]]:
    """(distinct values, counts) of several columns in one Spark job (GROUPING SETS)."""
    import pyarrow.compute as pc

    names = ", ".join(f"`{c}`" for c in columns)
    sets = ", ".join(f"(`{c}`)" for c in columns)
    view = f"ssl_modal_counts_{os.getpid()}_{abs(hash(tuple(columns))) % 10**9}"
    df.select(*columns).createOrReplaceTempView(view)
    try:
        rows = df.sparkSession.sql(
            f"SELECT {names}, grouping_id() AS g, count(*) AS count FROM {view} GROUP BY GROUPING SETS ({sets})"
        ).toArrow()
    finally:
        df.sparkSession.catalog.dropTempView(view)
    full, out = (1 << len(columns)) - 1, []
    for i, c in enumerate(columns):
        part = rows.filter(pc.equal(rows.column("g"), full ^ (1 << (len(columns) - 1 - i))))
        out.append((part.column(c).to_pandas(), part.column("count").to_numpy().astype(np.int64)))
    return out


def fit_spark(
    pre: TransactionPreprocessor, df, *, approx: bool = False, accuracy: int = 10000, source: str = "table"
) -> TransactionPreprocessor:
    """Fit `pre` on a Spark DataFrame by Spark aggregations; the state equals `pre.fit(df.toPandas())`'s
    (with approx=True the amount bin edges come from percentile_approx at `accuracy`). Spark jobs: one for
    amounts and times, one for all vocabularies, two more when there are numeric columns."""
    from pyspark.sql import functions as F

    cfg, cols = pre.config, pre.config.columns
    cols.check(pd.DataFrame(columns=df.columns), source)
    schema = "amount double, n long, tod boolean, kind int"
    parsed = df.select(*cols.required()).mapInArrow(_parse_batches(cols, source, approx), schema)
    try:
        aggs = [F.sum("n").alias("n"), F.max("tod").alias("tod"), F.min("kind").alias("k0"), F.max("kind").alias("k1")]
        hist = (parsed.agg(*aggs) if approx else parsed.groupBy("amount").agg(*aggs)).toPandas()
    except Exception as exc:
        raise _user_error(exc) from None
    hist = hist.sort_values("amount", kind="stable") if not approx else hist
    head = {
        "n": int(hist["n"].fillna(0).sum()),
        "tod": bool(hist["tod"].fillna(False).any()),
        "kinds": sorted({KINDS[int(k)] for k in pd.concat([hist["k0"], hist["k1"]]).dropna()}),
    }
    n = int(head["n"])
    if n == 0:
        raise DataValidationError(
            f"{source}: empty table (0 rows; columns: {df.columns}); expected at least one transaction"
        )
    if len(head["kinds"]) != 1:
        raise DataValidationError(f"{source}: event times parse as {sorted(head['kinds'])} in different parts")
    if approx:
        edges = _approx_edges(
            df.select(*cols.required()).mapInArrow(_parse_batches(cols, source, True), schema),
            n,
            cfg.amount_bins,
            accuracy,
        )
    else:
        values, cum = hist["amount"].to_numpy(np.float64), np.cumsum(hist["n"].to_numpy(np.int64))
        edges = amount_edges(n, cfg.amount_bins, lambda r: values[np.searchsorted(cum, r, side="right")])
    stats = {}
    if cols.numeric:
        sums_schema = "i long, n long, num string, den string"
        first = _totals(df.select(*cols.numeric).mapInArrow(_sums(cols, source, None), sums_schema), len(cols.numeric))
        means = [float(total / count) if count else 0.0 for count, total in first]
        second = _totals(
            df.select(*cols.numeric).mapInArrow(_sums(cols, source, means), sums_schema), len(cols.numeric)
        )
        for c, (count, total), (_, sq) in zip(cols.numeric, first, second, strict=True):
            stats[c] = numeric_stats(np.zeros(0), sums=(count, total, sq))
    vocabs = {}
    names = ["mcc", *cols.categorical]
    for name, (values, counts) in zip(names, _value_counts(df, [cols.mcc, *cols.categorical]), strict=True):
        codes, text = factorize_text(values)
        per_text = np.zeros(len(text), np.int64)
        np.add.at(per_text, codes[codes >= 0], counts[codes >= 0])
        vocabs[name] = vocabulary_from_counts(text, per_text, cfg.min_frequency)
    pre._finish_fit(vocabs, edges, stats, head["kinds"][0], bool(head["tod"]))
    return pre


def _approx_edges(parsed, n: int, bins: int, accuracy: int) -> np.ndarray:
    from pyspark.sql import functions as F

    def order_stat(ranks):
        q = [float(r) / max(n - 1, 1) for r in ranks]
        return np.asarray(parsed.agg(F.percentile_approx("amount", q, accuracy)).collect()[0][0], np.float64)

    return amount_edges(n, bins, order_stat)


# ---------------------------------------------------------------------------------------------- transforming
def _output_schema(pre: TransactionPreprocessor, df):
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        FloatType,
        IntegerType,
        IntegralType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    tx = pre.config.columns.transaction_id
    tx_type = LongType() if tx is None or isinstance(df.schema[tx].dataType, IntegralType) else StringType()
    fields = [
        StructField("client_id", StringType()),
        StructField("window", IntegerType()),
        StructField("start", IntegerType()),
        StructField("transaction_id", ArrayType(tx_type)),
        StructField("event_time", ArrayType(DoubleType())),
    ]
    for name, f in pre.fields.items():
        fields.append(StructField(name, ArrayType(IntegerType() if f["kind"] == "categorical" else FloatType())))
    return StructType(fields)


def _with_row_numbers(df):
    """`__row`: the 0-based row number in the DataFrame's read order (monotonic ids made contiguous)."""
    from pyspark.sql import functions as F

    mid = df.withColumn(ROW, F.monotonically_increasing_id())
    parts = mid.select(F.shiftright(ROW, 33).alias("p")).groupBy("p").count().orderBy("p").collect()
    offsets, total = [], 0
    for r in parts:
        offsets += [F.lit(int(r["p"])), F.lit(total)]
        total += int(r["count"])
    if not offsets:
        return mid
    part, local = F.shiftright(ROW, 33), F.col(ROW).bitwiseAND(2**33 - 1)
    return mid.withColumn(ROW, F.element_at(F.create_map(*offsets), part) + local)


def _bucket_transform(state: dict, out_dir: str, source: str, arrow_schema: pa.Schema):
    def run(key, table):
        from ssl_modal.transactions.preprocess import TransactionPreprocessor

        bucket = int(key[0].as_py())
        frame = table.to_pandas().sort_values(ROW, kind="stable").reset_index(drop=True)
        pre = TransactionPreprocessor.from_state_dict(state)
        try:
            seq = pre.transform(frame)
            report, out = seq.report, seq.table
        except DataValidationError as exc:
            if "0 clients left after filtering" not in str(exc):
                raise
            out = None
            report = {"rows_in": len(frame), "rows_dropped": {}, "clients": 0, "windows": 0, "events": 0}
        if out is not None:
            report["field_counts"] = {
                n: np.bincount(out.column(n).combine_chunks().flatten().to_numpy(), minlength=f["vocab_size"]).tolist()
                for n, f in pre.fields.items()
                if f["kind"] == "categorical"
            }
        path = Path(out_dir, "_reports", f"bucket-{bucket:06d}.json")
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({**report, "source": source}, default=int))
        os.replace(tmp, path)
        if out is None:
            return arrow_schema.empty_table()
        return out.select(arrow_schema.names).cast(arrow_schema)

    return run


def merge_reports(reports: list[dict]) -> dict:
    """Sum the per-bucket transform reports (counts and per-key counts; the rest from the first)."""
    out: dict = {}
    for r in reports:
        for k, v in r.items():
            if k in SUMMED:
                out[k] = out.get(k, 0) + int(v)
            elif k == "field_counts":
                acc = out.setdefault(k, {})
                for name, counts in v.items():
                    acc[name] = (np.asarray(acc.get(name, np.zeros(len(counts), np.int64))) + counts).tolist()
            elif isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
                acc = out.setdefault(k, {})
                for name, x in v.items():
                    acc[name] = acc.get(name, 0) + int(x)
            else:
                out.setdefault(k, v)
    return out


def transform_spark(
    pre: TransactionPreprocessor, df, out_dir: str | Path, *, partitions: int = 8, source: str = "table"
) -> dict:
    """Write the windows of `df` to `out_dir/windows/*.parquet` (whole clients per shard), the fitted state to
    `out_dir/preprocessor.json`; returns the summed report (also in `out_dir/report.json`)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    state = pre.state_dict()
    cols = pre.config.columns
    if cols.transaction_id is None:  # the default id is the input row number: make it a column
        df = _with_row_numbers(df.select(*cols.required()))
        state = {
            **state,
            "config": {**state["config"], "columns": {**state["config"]["columns"], "transaction_id": ROW}},
        }
    else:
        df = df.select(*cols.required()).withColumn(ROW, F.monotonically_increasing_id())
    out_dir = Path(out_dir)
    if (out_dir / "windows").exists():
        shutil.rmtree(out_dir / "windows")
    (out_dir / "_reports").mkdir(parents=True, exist_ok=True)
    for old in (out_dir / "_reports").glob("*.json"):
        old.unlink()
    schema = _output_schema(pre, df)
    bucketed = df.withColumn(BUCKET, F.pmod(F.xxhash64(cols.client_id), F.lit(int(partitions))))
    windows = (
        bucketed.repartition(int(partitions), BUCKET)
        .groupBy(BUCKET)
        .applyInArrow(_bucket_transform(state, str(out_dir.resolve()), source, to_arrow_schema(schema)), schema)
    )
    try:
        windows.write.parquet(str(out_dir / "windows"), compression="zstd")
    except Exception as exc:
        raise _user_error(exc) from None
    reports = [json.loads(p.read_text()) for p in sorted((out_dir / "_reports").glob("*.json"))]
    shutil.rmtree(out_dir / "_reports")
    report = merge_reports(reports)
    if not report.get("clients"):
        raise DataValidationError(
            f"{source}: 0 clients left after filtering ({report.get('rows_in')} rows in; "
            f"dropped: {report.get('rows_dropped')})"
        )
    (out_dir / "preprocessor.json").write_text(json.dumps(pre.state_dict()))
    (out_dir / "report.json").write_text(json.dumps(report, default=int, indent=1))
    return report
