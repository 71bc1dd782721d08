"""TransactionPreprocessor: parsing, sorting, vocabularies, amount bins, time features, state round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ssl_modal.transactions import MASK, PAD, UNK, ColumnMapping, PreprocessConfig, TransactionPreprocessor

from .tables import COLUMNS, raw_table


def _pre(columns=None, **kw) -> TransactionPreprocessor:
    return TransactionPreprocessor(PreprocessConfig(ColumnMapping(**(columns or COLUMNS)), **kw))


def _events(seq, name) -> np.ndarray:
    return np.asarray(seq.table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False))


def small(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["client", "ts", "amt", "mcc"])


SMALL = {"client_id": "client", "event_time": "ts", "amount": "amt", "mcc": "mcc"}


def test_fields_order_kinds_and_reserved_ids():
    pre = _pre(amount_bins=8)
    seq = pre.fit_transform(raw_table())
    assert list(pre.fields) == [
        "mcc",
        "amount_bin",
        "hour",
        "weekday",
        "day_of_month",
        "type",
        "amount",
        "time_gap",
        "forward",
    ]
    assert pre.fields["hour"] == {"kind": "categorical", "vocab_size": 27}
    assert pre.fields["mcc"]["vocab_size"] == 3 + 12  # 12 distinct codes in the table
    assert pre.vocabulary("mcc")[:3] == ["<pad>", "<mask>", "<unk>"] and (PAD, MASK, UNK) == (0, 1, 2)
    assert pre.fields["forward"] == {"kind": "numeric"} and pre.fields["type"]["vocab_size"] == 5
    for name, f in pre.fields.items():
        values = _events(seq, name)
        if f["kind"] == "categorical":
            assert values.min() >= 3 and values.max() < f["vocab_size"], name  # no PAD/MASK/UNK on clean data
    assert seq.report["rows_in"] == seq.report["rows_out"] == seq.report["events"] == 16 * 40
    assert seq.report["clients"] == 16 and len(seq) == seq.report["windows"]


def test_sorted_by_client_then_time_whatever_the_input_order():
    table = raw_table(clients=5, per_client=12)
    shuffled = table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    pre = _pre()
    seq = pre.fit_transform(shuffled)
    assert seq.report["timestamps_resorted"] > 0
    assert seq.table.column("client_id").to_pylist() == [f"c{i}" for i in range(5)]
    tx = seq.table.column("transaction_id").to_pylist()
    assert tx[0] == [f"t000_{i:03d}" for i in range(12)]
    times = seq.table.column("event_time").to_pylist()
    assert all(np.all(np.diff(t) >= 0) for t in times)
    assert pre.transform(table).table.equals(seq.table)  # same rows, any order -> same sequences
    assert pre.transform(table).report["timestamps_resorted"] == 0


def test_transaction_id_defaults_to_input_row_number():
    cols = {k: v for k, v in COLUMNS.items() if k != "transaction_id"}
    table = raw_table(clients=3, per_client=5).iloc[::-1].reset_index(drop=True)  # newest first
    seq = _pre(cols).fit_transform(table)
    tx = seq.table.column("transaction_id").to_pylist()
    assert tx[0] == [14, 13, 12, 11, 10]
    assert sorted(_events(seq, "transaction_id").tolist()) == list(range(15))


def test_min_frequency_and_unseen_values_map_to_unk_and_are_counted():
    train = small([("a", "2024-01-01", 1, 5411), ("a", "2024-01-02", 2, 5411), ("b", "2024-01-03", 3, 7011)])
    pre = TransactionPreprocessor(PreprocessConfig(ColumnMapping(**SMALL), min_frequency=2))
    seq = pre.fit_transform(train)
    assert pre.vocabulary("mcc") == ["<pad>", "<mask>", "<unk>", "5411"]
    assert _events(seq, "mcc").tolist() == [3, 3, UNK]
    assert seq.report["unseen_values"]["mcc"] == 1
    test = small([("a", "2024-02-01", 1, 5411), ("c", "2024-02-01", 1, 9999), ("c", "2024-02-02", 1, None)])
    out = pre.transform(test)
    assert _events(out, "mcc").tolist() == [3, UNK, UNK]
    assert out.report["unseen_values"]["mcc"] == 1 and out.report["missing_values"]["mcc"] == 1


def test_integral_float_codes_match_integer_codes():
    """A column read with a NaN becomes float (5411.0); it must still hit the vocabulary entry '5411'."""
    pre = _pre(SMALL).fit(small([("a", "2024-01-01", 1, 5411), ("a", "2024-01-02", 1, 7011)]))
    out = pre.transform(small([("a", "2024-01-01", 1, 5411.0), ("a", "2024-01-02", 1, np.nan)]))
    assert _events(out, "mcc").tolist() == [3, UNK] and out.report["missing_values"]["mcc"] == 1


def test_signed_log1p_amount_and_quantile_bins_fitted_on_training_data():
    amounts = [-50.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1000.0, 5.0]
    train = small([("a", f"2024-01-0{i + 1}", a, 1) for i, a in enumerate(amounts)])
    pre = _pre(SMALL, amount_bins=4)
    seq = pre.fit_transform(train)
    expected = np.sign(amounts) * np.log1p(np.abs(amounts))
    np.testing.assert_allclose(_events(seq, "amount"), expected.astype(np.float32), rtol=1e-6)
    edges = pre.state_dict()["amount_edges"]
    np.testing.assert_allclose(edges, np.quantile(expected, [0.25, 0.5, 0.75]))
    bins = _events(seq, "amount_bin")
    assert bins.min() == 3 and bins.max() == 3 + 3 and pre.fields["amount_bin"]["vocab_size"] == 3 + 4
    assert np.all(np.diff(bins[np.argsort(expected)]) >= 0)  # monotone in the amount
    far = pre.transform(small([("z", "2024-03-01", 1e9, 1), ("z", "2024-03-02", -1e9, 1)]))
    assert _events(far, "amount_bin").tolist() == [3 + 3, 3]  # edges stay those of the training data
    assert pre.vocabulary("amount_bin")[3].startswith("[-inf")


def test_time_gap_and_calendar_features():
    table = small(
        [("a", "2024-03-05 10:30:00", 1, 1), ("a", "2024-03-05 13:30:00", 1, 1), ("a", "2024-03-07 13:30:00", 1, 1)]
    )
    pre = _pre(SMALL, calendar=["hour", "weekday", "day_of_month", "month"])
    seq = pre.fit_transform(table)
    np.testing.assert_allclose(_events(seq, "time_gap"), np.log1p([0.0, 3.0, 48.0]).astype(np.float32))
    assert (_events(seq, "hour") - 3).tolist() == [10, 13, 13]
    assert (_events(seq, "weekday") - 3).tolist() == [1, 1, 3]  # 2024-03-05 was a Tuesday (Monday = 0)
    assert (_events(seq, "day_of_month") - 3 + 1).tolist() == [5, 5, 7]
    assert (_events(seq, "month") - 3 + 1).tolist() == [3, 3, 3]
    assert pre.vocabulary("weekday")[3:] == list(range(7))


def test_day_offsets_skip_hour_and_keep_weekday():
    table = small([("a", 0, 1, 1), ("a", 3, 1, 1), ("b", 10, 1, 1)])
    pre = _pre({**SMALL, "time_format": "days"})
    seq = pre.fit_transform(table)
    assert "hour" not in pre.fields and "day_of_month" not in pre.fields and "weekday" in pre.fields
    assert seq.report["calendar_skipped"] == ["hour", "day_of_month"] and seq.report["time_kind"] == "days"
    assert _events(seq, "event_time").tolist() == [0.0, 3.0, 10.0]
    np.testing.assert_allclose(_events(seq, "time_gap"), np.log1p([0.0, 72.0, 0.0]).astype(np.float32))
    assert (_events(seq, "weekday") - 3).tolist() == [0, 3, 3]


def test_datetime_dtype_epoch_seconds_and_timezones_agree():
    ts = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 06:00:00"])
    base = small([("a", t, 1, 1) for t in ts])
    a = _events(_pre(SMALL).fit_transform(base), "event_time")
    assert a.tolist() == [ts[0].timestamp(), ts[1].timestamp()]
    utc = base.assign(ts=ts.tz_localize("Europe/Berlin"))
    assert _events(_pre(SMALL).fit_transform(utc), "event_time").tolist() == (a - 3600).tolist()
    secs = base.assign(ts=(ts - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    assert _events(_pre({**SMALL, "time_format": "seconds"}).fit_transform(secs), "event_time").tolist() == a.tolist()


def test_several_time_columns_and_currency_amounts_tabformer_style():
    table = pd.DataFrame(
        {
            "Card": [0, 0, 1],
            "Year": [2002, 2002, 2003],
            "Month": [9, 9, 1],
            "Day": [1, 1, 2],
            "Time": ["06:42", "06:21", "23:05"],
            "Amount": ["$1,134.09", "$-38.48", "$0.50"],
            "MCC": [5300, 5411, 5300],
        }
    )
    cols = {
        "client_id": "Card",
        "event_time": ["Year", "Month", "Day", "Time"],
        "time_format": "%Y %m %d %H:%M",
        "amount": "Amount",
        "amount_format": "currency",
        "mcc": "MCC",
    }
    pre = _pre(cols)
    seq = pre.fit_transform(table)
    assert seq.table.column("transaction_id").to_pylist() == [[1, 0], [2]]
    assert (_events(seq, "hour") - 3).tolist() == [6, 6, 23]
    np.testing.assert_allclose(
        _events(seq, "amount"), np.float32([-np.log1p(38.48), np.log1p(1134.09), np.log1p(0.5)]), rtol=1e-6
    )


def test_decimal_comma_amounts_are_opt_in():
    table = small([("a", "2024-01-01", "1.234,50", 1), ("a", "2024-01-02", "-12,5", 1)])
    seq = _pre({**SMALL, "amount_format": "decimal_comma"}).fit_transform(table)
    np.testing.assert_allclose(_events(seq, "amount"), np.float32([np.log1p(1234.5), -np.log1p(12.5)]), rtol=1e-6)


def test_extra_numeric_standardised_missing_counted():
    table = raw_table(clients=2, per_client=6)
    table.loc[3, "forward"] = np.nan
    pre = _pre()
    seq = pre.fit_transform(table)
    mean, std = pre.state_dict()["numeric_stats"]["forward"]
    assert mean == pytest.approx(np.nanmean(table["forward"])) and std == pytest.approx(np.nanstd(table["forward"]))
    values = _events(seq, "forward")
    assert np.isfinite(values).all() and seq.report["missing_values"]["forward"] == 1
    assert (values == 0).sum() >= 1


def test_state_dict_is_json_and_round_trips():
    table = raw_table(clients=6, per_client=30)
    pre = _pre(amount_bins=8, max_length=8, window_stride=4)
    seq = pre.fit_transform(table)
    state = json.loads(json.dumps(pre.state_dict()))
    again = TransactionPreprocessor.from_state_dict(state)
    assert again.fields == pre.fields and again.vocabulary("type") == pre.vocabulary("type")
    assert again.config == pre.config and again.config.columns.transaction_id == "tx"
    assert again.transform(table).table.equals(seq.table)
    with pytest.raises(ValueError, match="not a transactions preprocessor state"):
        TransactionPreprocessor.from_state_dict({"vocabs": {}})


def test_reads_csv_and_parquet_paths(tmp_path):
    table = raw_table(clients=3, per_client=7)
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    a = _pre().fit_transform(table)
    b = _pre().fit_transform(tmp_path / "t.csv")
    c = _pre().fit_transform(str(tmp_path / "t.parquet"))
    assert b.table.equals(a.table) and c.table.equals(a.table)
    assert b.report["source"].endswith("t.csv")


def test_min_events_drops_and_counts_short_clients():
    table = small([("a", "2024-01-01", 1, 1), ("b", "2024-01-01", 1, 1), ("b", "2024-01-02", 1, 1)])
    kept = _pre(SMALL).fit_transform(table)
    assert kept.report["single_event_clients"] == 1 and kept.report["clients"] == 2
    dropped = _pre(SMALL, min_events=2).fit_transform(table)
    assert dropped.report["rows_dropped"]["min_events"] == 1 and dropped.report["clients_dropped_min_events"] == 1
    assert dropped.table.column("client_id").to_pylist() == ["b"] and dropped.report["rows_out"] == 2


def test_fields_named_like_python_and_torch_attributes():
    table = raw_table(clients=3, per_client=5).rename(columns={"type": "training"})
    table["mask"] = table["training"]
    table["row"] = np.arange(len(table), dtype=float)
    cols = {**COLUMNS, "categorical": ["training", "type_", "mask"], "numeric": ["forward", "row"]}
    table["type_"] = "x"
    pre = _pre(cols)
    seq = pre.fit_transform(table)
    assert {"training", "mask", "row", "forward"} <= set(pre.fields)
    item = seq[0]
    assert item["row"] == 0 and len(item["fields"]["row"]) == 5  # the field named "row" lives in "fields"
    from ssl_modal.transactions import collate_sequences

    batch = collate_sequences([seq[i] for i in range(len(seq))], pre.fields)
    assert set(batch["cat"]) == {"mcc", "amount_bin", "hour", "weekday", "day_of_month", "training", "type_", "mask"}
    assert batch["num"]["row"].shape == batch["mask"].shape and batch["row"].tolist() == [0, 1, 2]


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="preprocess.calendar: unknown field"):
        PreprocessConfig(ColumnMapping(**SMALL), calendar=["minute"])
    with pytest.raises(ValueError, match="window_stride"):
        PreprocessConfig(ColumnMapping(**SMALL), max_length=4, window_stride=9)
    with pytest.raises(ValueError, match="amount_format"):
        ColumnMapping(**SMALL, amount_format="euro")
    with pytest.raises(ValueError, match=r"clash with the built-in fields"):
        _pre({**SMALL, "categorical": ["hour"]})
    with pytest.raises(RuntimeError, match="not fitted"):
        _pre(SMALL).transform(small([("a", "2024-01-01", 1, 1)]))


def test_clients_ordered_by_their_values_and_returned_as_text():
    table = small([(10, "2024-01-01", 1, 1), (2, "2024-01-01", 1, 1), (2, "2024-01-02", 1, 1)])
    seq = _pre(SMALL).fit_transform(table)
    assert seq.table.column("client_id").to_pylist() == ["2", "10"]  # numeric order, not "10" < "2"
    mixed = small([("x", "2024-01-01", 1, 1), (3, "2024-01-01", 1, 1)])
    assert _pre(SMALL).fit_transform(mixed).table.column("client_id").to_pylist() == ["3", "x"]


def test_dates_without_time_of_day_skip_hour():
    table = small([("a", "2024-01-01", 1, 1), ("a", "2024-01-03", 1, 1)])
    pre = _pre(SMALL)
    seq = pre.fit_transform(table)
    assert "hour" not in pre.fields and seq.report["calendar_skipped"] == ["hour"]
    assert "weekday" in pre.fields and "day_of_month" in pre.fields
    later = pre.transform(small([("a", "2024-01-05 13:00", 1, 1)]))  # fitted fields stay fixed
    assert "hour" not in later.table.column_names
