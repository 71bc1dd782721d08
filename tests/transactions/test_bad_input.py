"""Bad input from issue 4: each case gives a clear message (file, rows, column, expected vs found) or is
handled and counted in the report -- nothing is silently dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssl_modal.transactions import UNK, ColumnMapping, PreprocessConfig, TransactionPreprocessor, collate_sequences

MAPPING = dict(client_id="client", event_time="ts", amount="amt", mcc="mcc", transaction_id="tx")


def table(n_clients: int = 3, per_client: int = 4) -> pd.DataFrame:
    rows = []
    for c in range(n_clients):
        for i in range(per_client):
            rows.append(
                {
                    "tx": f"t{c}_{i}",
                    "client": f"c{c}",
                    "ts": f"2024-03-{1 + i:02d} 1{c}:00:00",
                    "amt": 10.0 * (i + 1),
                    "mcc": [5411, 5812, 4111][(c + i) % 3],
                }
            )
    return pd.DataFrame(rows)


def pre(**overrides) -> TransactionPreprocessor:
    columns = {**MAPPING, **overrides.pop("columns", {})}
    return TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**columns), **overrides))


def test_misnamed_column_names_role_and_closest_column():
    frame = table().rename(columns={"amt": "amount"})
    with pytest.raises(ValueError) as err:
        pre().fit(frame)
    msg = str(err.value)
    assert "'amt'" in msg and "columns.amount" in msg and "'amount'" in msg  # missing, its role, the suggestion


def test_missing_column_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bank.csv"
    table().drop(columns=["mcc"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bank\.csv.*'mcc'"):
        pre().fit(path)


@pytest.mark.parametrize("bad", ["12,50", "N/A"])
def test_non_numeric_amount_names_rows_and_values(bad, tmp_path):
    frame = table()
    frame["amt"] = frame["amt"].astype(str)
    frame.loc[[2, 7], "amt"] = bad
    path = tmp_path / "bank.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError) as err:
        pre().fit(path)
    msg = str(err.value)
    assert "bank.csv" in msg and "'amt'" in msg and "expected a number" in msg
    assert bad in msg and "2 row" in msg  # both bad rows counted, values quoted
    if bad == "12,50":
        assert "decimal_comma" in msg  # the message says how to accept it


def test_decimal_comma_only_when_configured():
    frame = table()
    frame["amt"] = ["12,50", "1.234,00", "3", "-0,99"] * 3
    seq = pre(columns={"amount_format": "decimal_comma"}).fit_transform(frame)
    amount = np.sort(seq.table.column("amount").combine_chunks().flatten().to_numpy())
    expected = np.sort(np.sign([12.5, 1234.0, 3.0, -0.99] * 3) * np.log1p(np.abs([12.5, 1234.0, 3.0, -0.99] * 3)))
    np.testing.assert_allclose(amount, expected, rtol=1e-6)


def test_nan_mcc_maps_to_unk_and_is_counted():
    frame = table()
    frame["mcc"] = frame["mcc"].astype(float)
    frame.loc[[1, 5, 6], "mcc"] = np.nan
    fitted = pre()
    seq = fitted.fit_transform(frame)
    assert seq.report["missing_values"]["mcc"] == 3
    assert seq.report["rows_out"] == len(frame)  # kept, not dropped
    ids = seq.table.column("mcc").combine_chunks().flatten().to_numpy()
    assert int((ids == UNK).sum()) == 3
    assert "5411" in map(str, fitted.vocabulary("mcc"))  # the float 5411.0 reads as code 5411, not "5411.0"


def test_unseen_mcc_at_inference_maps_to_unk_and_is_counted_per_field():
    fitted = pre(columns={"categorical": ["channel"]})
    train = table().assign(channel="card")
    fitted.fit(train)
    new = table().assign(channel=["card", "atm", "card", "web"] * 3)
    new.loc[[0, 4], "mcc"] = 9999
    seq = fitted.transform(new)
    assert seq.report["unseen_values"] == {"mcc": 2, "channel": 6}
    ids = seq.table.column("mcc").combine_chunks().flatten().to_numpy()
    assert int((ids == UNK).sum()) == 2


def test_unparsable_timestamps_name_rows_and_values():
    frame = table()
    frame.loc[[3, 9], "ts"] = ["yesterday", "2024-13-45 10:00:00"]
    with pytest.raises(ValueError) as err:
        pre().fit(frame)
    msg = str(err.value)
    assert "'ts'" in msg and "yesterday" in msg and "2024-13-45" in msg and "data row 4" in msg


def test_numeric_time_without_unit_asks_for_time_format():
    frame = table().assign(ts=np.arange(12))
    with pytest.raises(ValueError, match="time_format"):
        pre().fit(frame)
    seq = pre(columns={"time_format": "days"}).fit_transform(frame)
    assert seq.report["time_kind"] == "days"


def test_out_of_order_timestamps_are_sorted_and_counted():
    frame = table()
    shuffled = frame.iloc[np.random.default_rng(0).permutation(len(frame))].reset_index(drop=True)
    ordered = pre().fit_transform(frame)
    seq = pre().fit_transform(shuffled)
    assert ordered.report["timestamps_resorted"] == 0 and seq.report["timestamps_resorted"] > 0
    assert seq.table.column("transaction_id").to_pylist() == ordered.table.column("transaction_id").to_pylist()


def test_duplicate_transaction_ids_are_named():
    frame = table()
    frame.loc[5, "tx"] = frame.loc[2, "tx"]
    with pytest.raises(ValueError) as err:
        pre().fit(frame)
    msg = str(err.value)
    assert "'tx'" in msg and "unique" in msg and repr(frame.loc[2, "tx"]) in msg


def test_single_event_client_kept_and_counted_or_dropped_by_min_events():
    frame = pd.concat(
        [
            table(),
            pd.DataFrame([{"tx": "solo", "client": "lonely", "ts": "2024-03-09 09:00:00", "amt": 5.0, "mcc": 5411}]),
        ],
        ignore_index=True,
    )
    seq = pre().fit_transform(frame)
    assert seq.report["single_event_clients"] == 1 and seq.report["clients"] == 4
    assert "lonely" in seq.table.column("client_id").to_pylist()
    dropped = pre(min_events=2).fit_transform(frame)
    assert dropped.report["clients"] == 3 and dropped.report["clients_dropped_min_events"] == 1
    assert dropped.report["rows_dropped"]["min_events"] == 1 and dropped.report["rows_out"] == len(frame) - 1


def test_empty_table(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        pre().fit(table().iloc[:0])
    path = tmp_path / "header_only.csv"
    path.write_text("tx,client,ts,amt,mcc\n")
    with pytest.raises(ValueError, match=r"header_only\.csv.*(empty|0 rows|no data)"):
        pre().fit(path)


def test_zero_clients_after_filtering_is_a_clear_error():
    with pytest.raises(ValueError) as err:
        pre(min_events=10).fit_transform(table(per_client=4))
    msg = str(err.value)
    assert "0 clients" in msg and "min_events=10" in msg and "12" in msg  # rows in / dropped are named
    fitted = pre(min_events=3).fit(table(per_client=4))
    with pytest.raises(ValueError, match="0 clients"):
        fitted.transform(table(per_client=2))


@pytest.mark.parametrize("names", [["type", "training", "forward"], ["mask", "row", "cat"]])
def test_field_names_that_clash_with_python_or_torch_attributes(names):
    frame = table()
    frame[names[0]] = ["a", "b"] * 6
    frame[names[1]] = ["x", "y", "z"] * 4
    frame[names[2]] = np.linspace(-1, 1, 12)
    p = pre(columns={"categorical": names[:2], "numeric": names[2:]})
    seq = p.fit_transform(frame)
    assert {names[0], names[1], names[2]} <= set(p.fields)
    batch = collate_sequences([seq[i] for i in range(len(seq))], p.fields)
    assert set(batch) == {"cat", "num", "mask", "lengths", "row"}
    assert batch["cat"][names[0]].shape == batch["mask"].shape and names[2] in batch["num"]
    assert int(batch["mask"].sum()) == len(frame)


def test_empty_amount_or_time_is_an_error_naming_the_rows():
    frame = table()
    frame.loc[4, "amt"] = np.nan
    with pytest.raises(ValueError, match=r"'amt'.*empty.*data row 5"):
        pre().fit(frame)
    frame = table()
    frame.loc[6, "ts"] = None
    with pytest.raises(ValueError, match=r"'ts'.*empty.*data row 7"):
        pre().fit(frame)


def test_rows_without_client_are_dropped_and_counted():
    frame = table()
    frame.loc[[0, 5], "client"] = None
    seq = pre().fit_transform(frame)
    assert seq.report["rows_dropped"]["missing_client_id"] == 2
    assert seq.report["rows_out"] == len(frame) - 2 and seq.report["rows_in"] == len(frame)


def test_resorting_is_logged(caplog):
    frame = table().iloc[::-1].reset_index(drop=True)
    with caplog.at_level("WARNING", logger="ssl_modal"):
        seq = pre().fit_transform(frame)
    n = seq.report["timestamps_resorted"]
    assert n > 0 and any(str(n) in r.getMessage() and "order" in r.getMessage() for r in caplog.records)
