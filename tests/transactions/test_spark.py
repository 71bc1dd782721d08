"""The Spark engine gives the pandas engine's windows, field by field, on the shared tables (local[2])."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ssl_modal.transactions import ColumnMapping, PreprocessConfig, TransactionPreprocessor
from ssl_modal.transactions.preprocess import _signed_log1p, amount_edges, exact_sum, numeric_stats

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "transactions"
TABLES = {
    "sparkov": (
        "sparkov/transactions.parquet",
        {
            "client_id": "client_id",
            "event_time": "trans_date_trans_time",
            "amount": "amt",
            "mcc": "category",
            "transaction_id": "trans_num",
        },
        {"max_length": 256},
    ),
    "berka": (
        "berka_pretrain/transactions.csv",
        {
            "client_id": "account_id",
            "event_time": "date",
            "time_format": "%y%m%d",
            "amount": "amount",
            "mcc": "operation",
            "categorical": ["type", "k_symbol"],
            "numeric": ["balance"],
            "transaction_id": "trans_id",
        },
        {"max_length": 128, "calendar": ["weekday", "day_of_month"]},
    ),
    "age": (
        "age_sample/transactions.csv",
        {
            "client_id": "client_id",
            "event_time": "trans_date",
            "time_format": "days",
            "amount": "amount_rur",
            "mcc": "small_group",
        },
        {"max_length": 16, "window_stride": 8, "calendar": ["weekday"]},
    ),
}


def test_amount_edges_equal_numpy_quantile_and_sums_are_exact():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 17, 5000):
        x = np.round(rng.lognormal(3, 2, n) * np.where(rng.random(n) < 0.1, -1, 1), 2)
        for bins in (2, 7, 32):
            ref = np.unique(np.quantile(_signed_log1p(x), np.linspace(0, 1, bins + 1)[1:-1]))
            assert np.array_equal(amount_edges(n, bins, lambda r, x=x: np.sort(x)[r]), ref), (n, bins)
        v = rng.normal(100, 50, n)
        assert exact_sum(v) == exact_sum(v[::-1]) == exact_sum(v[: n // 3]) + exact_sum(v[n // 3 :])
        mean, std = numeric_stats(v)
        assert mean == pytest.approx(np.mean(v), rel=1e-13) and std == pytest.approx(np.std(v) or 1.0, rel=1e-12)


def _spark():
    try:
        from ssl_modal.transactions.spark import require_spark, spark_session

        require_spark()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"Spark engine unavailable: {exc}")
    return spark_session("local[2]", conf={"spark.sql.shuffle.partitions": "4"})


@pytest.fixture(scope="module")
def spark():
    session = _spark()
    yield session
    session.stop()


def _sorted(table):
    keys = list(zip(table.column("client_id").to_pylist(), table.column("window").to_pylist(), strict=True))
    return table.take(sorted(range(len(keys)), key=keys.__getitem__))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TABLES))
def test_spark_windows_equal_pandas_windows(spark, name, tmp_path):
    from ssl_modal.data.readers import read_table
    from ssl_modal.transactions.spark import fit_spark, read_spark_table, transform_spark

    rel, columns, options = TABLES[name]
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    config = PreprocessConfig(ColumnMapping(**columns), **options)
    local = TransactionPreprocessor(config)
    expected = local.fit_transform(read_table(path))

    df = read_spark_table(spark, path)
    remote = fit_spark(TransactionPreprocessor(config), df, source=str(path))
    assert remote.state_dict() == local.state_dict()  # vocabularies, equal bin edges, numeric stats
    report = transform_spark(remote, df, tmp_path / "shards", partitions=3, source=str(path))
    shards = sorted((tmp_path / "shards" / "windows").glob("*.parquet"))
    assert len(shards) >= 2
    got = pq.read_table(tmp_path / "shards" / "windows")
    assert sorted(got.column_names) == sorted(expected.table.column_names)
    got, want = _sorted(got.select(expected.table.column_names)), _sorted(expected.table)
    for column in want.column_names:
        a, b = got.column(column).to_pylist(), want.column(column).to_pylist()
        assert a == b, f"{name}: column {column} differs"
    for key in (
        "rows_in",
        "rows_out",
        "clients",
        "windows",
        "events",
        "timestamps_resorted",
        "rows_dropped",
        "missing_values",
        "unseen_values",
    ):
        assert report[key] == expected.report[key], key
    state = json.loads((tmp_path / "shards" / "preprocessor.json").read_text())
    assert state == local.state_dict()
    clients = [set(pq.read_table(s, columns=["client_id"]).column(0).to_pylist()) for s in shards]
    assert sum(map(len, clients)) == len(set().union(*clients))  # each client in exactly one shard


@pytest.mark.slow
def test_approximate_edges_are_close(spark):
    from ssl_modal.data.readers import read_table
    from ssl_modal.transactions.spark import fit_spark, read_spark_table

    rel, columns, options = TABLES["berka"]
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    config = PreprocessConfig(ColumnMapping(**columns), **options)
    exact = np.array(TransactionPreprocessor(config).fit(read_table(path)).state_dict()["amount_edges"])
    approx = fit_spark(TransactionPreprocessor(config), read_spark_table(spark, path), approx=True)
    got = np.array(approx.state_dict()["amount_edges"])
    assert len(got) == len(exact) and np.max(np.abs(got - exact)) < 0.05  # signed-log1p units


@pytest.mark.slow
def test_spark_scoring_returns_every_row_once_with_the_single_machine_values(spark, tmp_path):
    from ssl_modal.core.config import from_dict
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.config import TransactionsConfig
    from ssl_modal.transactions.features import client_embeddings, features
    from ssl_modal.transactions.shards import train_from_shards, write_shards_pandas
    from ssl_modal.transactions.spark_score import score_spark, write_scores

    from .tables import COLUMNS, raw_table

    table = raw_table(clients=10, per_client=30)
    table.loc[5, "client"] = None  # a dropped row still comes back (scored=False)
    pre = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**COLUMNS), max_length=16))
    write_shards_pandas(pre, table, tmp_path / "shards", partitions=2)
    cfg = from_dict(
        TransactionsConfig,
        {
            "data": {"shards": str(tmp_path / "shards")},
            "encoder": {"hidden": 16, "mcc_dim": 4, "cat_dim": 4, "num_dim": 4},
            "train": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 3,
                "batch_size": 4,
                "progress": False,
                "tensorboard": False,
            },
        },
    )
    train_from_shards(cfg)
    model = load_model(tmp_path / "run")
    table.to_parquet(tmp_path / "tx.parquet")  # a lake file, read by Spark
    df = spark.read.parquet(str(tmp_path / "tx.parquet"))
    write_scores(tmp_path / "run", df, tmp_path / "scores", partitions=3)
    got = pq.read_table(tmp_path / "scores").to_pandas().set_index("tx").sort_index()  # the table's id column
    assert len(got) == len(table) and got.index.is_unique and set(got.index) == set(table["tx"])
    assert int((~got["scored"]).sum()) == 1 and not got.loc["t000_005", "scored"]
    want = features(model, table, progress=False).set_index("tx").sort_index()
    np.testing.assert_allclose(
        got["surprise_total"].to_numpy(np.float64), want["surprise_total"].to_numpy(np.float64), rtol=1e-4, atol=1e-5
    )
    clients = score_spark(tmp_path / "run", df, kind="clients", partitions=3).toPandas().set_index("client_id")
    ref = client_embeddings(model, table).set_index("client_id")
    assert sorted(clients.index) == sorted(ref.index) and len(clients) == 10
    np.testing.assert_allclose(clients.loc[ref.index, "emb_000"], ref["emb_000"], rtol=1e-4, atol=1e-5)
