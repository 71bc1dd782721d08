"""The four shared transaction data sets go through the same preprocessing with only a different ColumnMapping.

Each test preprocesses a slice of ../shared/data/transactions/<name> (skipped when the folder is absent) and
checks what a recipe relies on: every input row ends up in exactly one window (or is counted as dropped),
events are in time order within a client, windows respect max_length, extra fields (named e.g. `type`) exist,
and the fitted state survives a JSON round trip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from ssl_modal.transactions import PAD, UNK, ColumnMapping, PreprocessConfig, TransactionPreprocessor

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "transactions"

# The mappings the recipes use (also in /work/handoff/transactions_data.md as YAML `columns:` blocks).
MAPPINGS = {
    "age_sample": dict(
        client_id="client_id", event_time="trans_date", time_format="days", amount="amount_rur", mcc="small_group"
    ),
    "tabformer_sample": dict(
        client_id="Card",
        event_time=["Year", "Month", "Day", "Time"],
        time_format="%Y %m %d %H:%M",
        amount="Amount",
        amount_format="currency",
        mcc="MCC",
        categorical=["Use Chip", "Merchant State", "Errors?"],
    ),
    "berka_pretrain": dict(
        client_id="account_id",
        event_time="date",
        time_format="%y%m%d",
        amount="amount",
        mcc="operation",
        categorical=["type", "k_symbol"],
        numeric=["balance"],
        transaction_id="trans_id",
    ),
    "sparkov": dict(
        client_id="client_id",
        event_time="trans_date_trans_time",
        amount="amt",
        mcc="category",
        categorical=["merchant"],
        transaction_id="trans_num",
    ),
}
FILES = {
    "age_sample": "transactions.csv",
    "tabformer_sample": "transactions.csv",
    "berka_pretrain": "transactions.csv",
    "sparkov": "transactions.parquet",
}


def shared_slice(name: str, rows: int) -> pd.DataFrame:
    path = SHARED / name / FILES[name]
    if not path.exists():
        pytest.skip(f"../shared/data/transactions/{name} not present ({path})")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame.iloc[:rows].reset_index(drop=True)


def check_sequences(frame: pd.DataFrame, mapping: dict, max_length: int = 64):
    pre = TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**mapping), max_length=max_length))
    seq = pre.fit_transform(frame)
    t = seq.table
    report = seq.report
    # every row is in exactly one window or counted as dropped
    dropped = sum(report["rows_dropped"].values())
    assert report["rows_in"] == len(frame)
    assert report["rows_out"] + dropped == len(frame) and dropped == 0
    tx = t.column("transaction_id").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    expected = frame[mapping["transaction_id"]].to_numpy() if mapping.get("transaction_id") else np.arange(len(frame))
    assert len(tx) == len(frame) and set(map(str, tx)) == set(map(str, expected))
    # clients and windows
    assert report["clients"] == frame[mapping["client_id"]].nunique() == len(set(t.column("client_id").to_pylist()))
    lengths = pc.list_value_length(t.column("mcc")).to_numpy()
    assert lengths.max() <= max_length and lengths.min() >= 1 and len(seq) == t.num_rows == report["windows"]
    # time order within each client: windows of a client are consecutive, their events in time order
    clients = np.repeat(np.asarray(t.column("client_id").to_pylist(), dtype=object), lengths)
    times = t.column("event_time").combine_chunks().flatten().to_numpy()
    same = clients[1:] == clients[:-1]
    assert np.all(times[1:][same] >= times[:-1][same])
    # every event's fields belong to the input row with its transaction id (catches misaligned reordering)
    pos = (
        np.asarray(tx, dtype=np.int64)
        if not mapping.get("transaction_id")
        else pd.Index(frame[mapping["transaction_id"]].astype(str)).get_indexer(pd.Index(tx.astype(str)))
    )
    raw = frame[mapping["amount"]]
    raw = pd.to_numeric(raw.astype(str).str.replace("$", "", regex=False)) if raw.dtype.kind not in "fi" else raw
    expected_amount = np.sign(raw.to_numpy(float)) * np.log1p(np.abs(raw.to_numpy(float)))
    amount = t.column("amount").combine_chunks().flatten().to_numpy()
    np.testing.assert_allclose(amount, expected_amount[pos], rtol=1e-5, atol=1e-5)
    vocab = np.asarray([str(v) for v in pre.vocabulary("mcc")], dtype=object)
    mcc_ids = t.column("mcc").combine_chunks().flatten().to_numpy()
    known = mcc_ids != UNK
    raw_mcc = frame[mapping["mcc"]].to_numpy()[pos][known]
    assert np.array_equal(vocab[mcc_ids[known]], np.asarray([str(v) for v in raw_mcc], dtype=object))
    # time_gap = log1p(hours since the client's previous event), 0 for a client's first event
    hours = np.diff(times) * (24.0 if report["time_kind"] == "days" else 1 / 3600.0)
    gap = t.column("time_gap").combine_chunks().flatten().to_numpy()
    np.testing.assert_allclose(gap[1:][same], np.log1p(hours[same]), rtol=1e-4, atol=1e-5)
    assert np.all(gap[1:][~same] == 0) and gap[0] == 0
    # fields: built-ins, the extras under their own names, ids within the vocabulary, no PAD inside a window
    fields = pre.fields
    assert list(fields)[:2] == ["mcc", "amount_bin"]
    for name in mapping.get("categorical", []) + ["mcc", "amount_bin"]:
        ids = t.column(name).combine_chunks().flatten().to_numpy()
        assert fields[name]["kind"] == "categorical"
        assert ids.min() > PAD and ids.max() < fields[name]["vocab_size"] == len(pre.vocabulary(name))
    for name in mapping.get("numeric", []) + ["amount", "time_gap"]:
        assert fields[name]["kind"] == "numeric"
        assert np.isfinite(t.column(name).combine_chunks().flatten().to_numpy()).all()
    # the fitted state is plain JSON and rebuilds the same preprocessing
    state = json.loads(json.dumps(pre.state_dict()))
    again = TransactionPreprocessor.from_state_dict(state).transform(frame)
    assert again.table.equals(t)
    return pre, seq


def test_age_sample_day_offsets():
    frame = shared_slice("age_sample", 1000)
    pre, seq = check_sequences(frame, MAPPINGS["age_sample"], max_length=8)
    # day offsets: no time of day, so no hour / day-of-month; weekday is the day index mod 7
    assert "hour" not in pre.fields and "day_of_month" not in pre.fields
    assert seq.report["clients"] == 100 and seq.report["windows"] == 200  # 10 events each -> 8 + 2
    assert len(pre.vocabulary("mcc")) == 3 + frame["small_group"].nunique()


def test_tabformer_four_time_columns_and_currency_amounts():
    frame = shared_slice("tabformer_sample", 3000)
    pre, seq = check_sequences(frame, MAPPINGS["tabformer_sample"])
    amount = seq.table.column("amount").combine_chunks().flatten().to_numpy()
    assert (amount < 0).any(), "refunds ($-...) keep their sign through the signed log1p"
    # most rows have no "Errors?" value: those map to UNK and are counted, not dropped
    missing = int(frame["Errors?"].isna().sum())
    assert missing > 0 and seq.report["missing_values"]["Errors?"] == missing
    ids = seq.table.column("Errors?").combine_chunks().flatten().to_numpy()
    assert int((ids == UNK).sum()) == missing
    assert {"hour", "weekday", "day_of_month"} <= set(pre.fields)


def test_berka_yymmdd_dates_and_a_field_named_type():
    frame = shared_slice("berka_pretrain", 5000)
    pre, seq = check_sequences(frame, MAPPINGS["berka_pretrain"])
    assert "type" in pre.fields and set(pre.vocabulary("type")[3:]) <= {"PRIJEM", "VYDAJ", "VYBER"}
    times = seq.table.column("event_time").combine_chunks().flatten().to_numpy()
    first = pd.Timestamp(times.min(), unit="s")
    assert first == pd.Timestamp("1993-01-01")
    # interest rows have no operation: counted as missing MCC values (UNK), not dropped
    assert seq.report["missing_values"]["mcc"] == int(frame["operation"].isna().sum()) > 0
    # dates only (all at midnight): the hour field carries no information
    hours = seq.table.column("hour").combine_chunks().flatten().to_numpy() if "hour" in pre.fields else None
    assert hours is None or len(np.unique(hours)) == 1


@pytest.mark.parametrize("rows", [20000])
def test_sparkov_datetime_column_and_string_ids(rows):
    frame = shared_slice("sparkov", rows)
    pre, seq = check_sequences(frame, MAPPINGS["sparkov"], max_length=128)
    assert len(pre.vocabulary("mcc")) == 3 + frame["category"].nunique()
    hours = seq.table.column("hour").combine_chunks().flatten().to_numpy() - 3
    assert np.array_equal(np.sort(np.unique(hours)), np.sort(frame["trans_date_trans_time"].dt.hour.unique()))


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "transactions"


def test_examples_data_matches_its_readme_and_preprocesses():
    """examples/data/transactions (the demo's data) is real, labelled, small, and goes through the same code."""
    sparkov = pd.read_csv(EXAMPLES / "sparkov_sample.csv")
    assert (len(sparkov), sparkov["client_id"].nunique(), int(sparkov["is_fraud"].sum())) == (4848, 13, 135)
    months = pd.to_datetime(sparkov["trans_date_trans_time"]).dt.month
    assert sorted(months[sparkov["is_fraud"] == 1].unique()) == list(range(1, 13))  # fraud on both sides of a split
    check_sequences(sparkov, MAPPINGS["sparkov"], max_length=128)
    age = pd.read_csv(EXAMPLES / "age_transactions.csv")
    targets = pd.read_csv(EXAMPLES / "age_targets.csv")
    assert len(age) == 1000 and set(age["client_id"]) == set(targets["client_id"]) and len(targets) == 100
    check_sequences(age, MAPPINGS["age_sample"], max_length=16)
    total = sum(p.stat().st_size for p in EXAMPLES.iterdir())
    assert total <= 3 * 1024 * 1024 and (EXAMPLES / "README.md").exists() and (EXAMPLES / "LICENSE.md").exists()


def test_same_sequences_as_a_naive_python_reference():
    """The vectorised preprocessing equals the per-client Python loop of bench/transactions_preprocess.py,
    field by field (ids, bins, calendar, gaps, windows), on the real Sparkov sample with integer client ids
    (whose text order differs from their numeric order) and rows shuffled."""
    from bench.transactions_preprocess import check_same

    frame = pd.read_csv(EXAMPLES / "sparkov_sample.csv", parse_dates=["trans_date_trans_time"])
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    assert "time_gap" in check_same(shuffled)
