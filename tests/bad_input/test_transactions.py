"""Bank exports given to a transactions model: separators, BOM, decimal commas, date orders, footers, ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ssl_modal.cli import main
from ssl_modal.transactions.mapping import ColumnMapping
from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor

from .conftest import Case, params, run_case, write_csv

HEADER = "tx,client,ts,amt,mcc,type,forward\n"


def rows(*lines: str) -> str:
    return HEADER + "".join(line + "\n" for line in lines)


GOOD = [f"t{i},c{i % 2},2024-01-{i + 1:02d} 10:00:00,{10 + i}.50,5411,card,0.1" for i in range(6)]


def embed(content: str, *extra: str, name: str = "bank.csv", encoding: str = "utf-8"):
    def make(tmp):
        write_csv(tmp / name, content, encoding)
        return ["embed", "{transactions}", str(tmp / name), "-o", "{out}", *extra]

    return make


def with_row(i: int, **values) -> str:
    """GOOD with data row i (1-based) changed."""
    lines = [line.split(",") for line in GOOD]
    names = HEADER.strip().split(",")
    for key, value in values.items():
        lines[i - 1][names.index(key)] = value
    return rows(*(",".join(line) for line in lines))


CASES = [
    Case("good-table", embed(rows(*GOOD)), 0, r"2 clients from 6 rows.*wrote 2 embeddings"),
    Case(
        "semicolon-bom-decimal-comma",
        embed("\ufeff" + rows(*GOOD).replace(",", ";").replace(".50", ",50")),
        2,
        r"column 'amt' \(columns\.amount\): expected a number, found non-numeric values in 6 row\(s\) "
        r"\(data row 1: '10,50'.*set columns\.amount_format: decimal_comma",
    ),
    Case(
        "day-month-ambiguous",
        embed(rows(*[line.replace(f"2024-01-{i + 1:02d}", f"0{i + 1}/02/2024") for i, line in enumerate(GOOD)])),
        2,
        r"column 'ts' \(columns\.event_time\): dates such as '01/02/2024 10:00:00' \(data row 1\) read as "
        r"different days .*set columns\.time_format: '%d/%m/%Y' \(day first\) or '%m/%d/%Y' \(month first\)",
    ),
    Case(
        "day-month-mixed",
        embed(
            with_row(2, ts="13/01/2024 10:00:00")
            .replace("2024-01-05 10:00:00", "01/13/2024 10:00:00")
            .replace("2024-01-01 10:00:00", "01/01/2024 10:00:00")
        ),
        2,
        r"expected one date order, found day-first dates \(data row 2: '13/01/2024 10:00:00'\) and month-first "
        r"dates \(data row 5: '01/13/2024 10:00:00'\)",
    ),
    Case(
        "dotted-german-dates",
        embed(rows(*[line.replace(f"2024-01-{i + 1:02d}", f"0{i + 1}.03.2024") for i, line in enumerate(GOOD)])),
        2,
        r"'%d\.%m\.%Y' \(day first\)",
    ),
    Case(
        "unparsable-date",
        embed(with_row(3, ts="yesterday")),
        2,
        r"'ts' \(columns\.event_time\): expected a datetime.*unparsable values in 1 row\(s\) \(data row 3: "
        r"'yesterday'\)",
    ),
    Case("empty-amount", embed(with_row(4, amt="")), 2, r"'amt' .*found empty values in 1 row\(s\) \(data row 4"),
    Case("currency-sign", embed(with_row(2, amt="$12.50")), 2, r"set columns\.amount_format: currency"),
    Case("thousands-separator", embed(with_row(2, amt='"1,234.50"')), 2, r"data row 2: '1,234\.50'"),
    Case(
        "footer-total-line",
        embed(rows(*GOOD, "Total,,,,,,")),
        2,
        r"'ts' .*empty values in 1 row\(s\) "
        r"\(data row 7",
    ),
    Case(
        "duplicate-transaction-id",
        embed(with_row(5, tx="t0")),
        2,
        r"expected unique ids, found 1 duplicated id\(s\): 't0' at data rows \[1, 5\]",
    ),
    Case(
        "empty-transaction-id",
        embed(with_row(6, tx="")),
        2,
        r"'tx' \(columns\.transaction_id\): expected an id "
        r"in every row, found empty values in 1 row\(s\) \(data row 6",
    ),
    Case("missing-mcc-column", embed(rows(*GOOD).replace(",mcc,", ",merchant_category,")), 2, r"missing \['mcc'\]"),
    Case("header-only", embed(HEADER), 2, r"bank\.csv: no data rows \(only a header"),
    Case("latin1-merchant", embed(with_row(1, type="Café"), encoding="latin-1"), 2, r"not valid UTF-8 at line 2"),
    Case(
        "column-flag",
        embed(rows(*GOOD), "--column", "amt"),
        2,
        r"--column: a transactions model embeds whole "
        r"client histories .*drop --column",
    ),
    Case(
        "id-column-flag",
        embed(rows(*GOOD), "--id-column", "tx"),
        2,
        r"one row per client, keyed by its client "
        r"column 'client'; drop --id-column",
    ),
    Case(
        "features-unknown-suffix",
        lambda tmp: ["features", "{transactions}", str(tmp / "t.csv"), "-o", "{out}"],
        2,
        r"unknown output suffix '\.xlsx'; supported: \.parquet, \.csv",
        output="f.xlsx",
    ),
    Case(
        "features-bad-table",
        lambda tmp: (
            write_csv(tmp / "t.csv", with_row(2, amt="abc"))
            and ["features", "{transactions}", str(tmp / "t.csv"), "-o", "{out}"]
        ),
        2,
        r"data row 2: 'abc'",
    ),
    Case(
        "features-csv",
        lambda tmp: (
            write_csv(tmp / "t.csv", rows(*GOOD)) and ["features", "{transactions}", str(tmp / "t.csv"), "-o", "{out}"]
        ),
        0,
        r"wrote 6 rows \(6 scored",
        output="f.csv",
    ),
    Case(
        "numeric-time-no-unit",
        embed(rows(*[line.replace(f"2024-01-{i + 1:02d} 10:00:00", str(i)) for i, line in enumerate(GOOD)])),
        2,
        r"is numeric; say what it holds with columns\.time_format",
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bank_exports(case, tmp_path, capsys, models):
    run_case(case, tmp_path, capsys, models)


def test_client_ids_keep_name_and_dtype(tmp_path, models):
    table = pd.read_csv(pd.io.common.StringIO(rows(*GOOD)))
    table["client"] = table["client"].str[1:].astype(np.int64) + 100
    table.to_parquet(tmp_path / "t.parquet")
    argv = ["embed", str(models["transactions"]), str(tmp_path / "t.parquet"), "-o", str(tmp_path / "e.parquet")]
    assert main(argv) == 0
    out = pq.read_table(tmp_path / "e.parquet")
    assert out.column_names[:3] == ["client", "windows", "events"] and str(out.column("client").type) == "int64"
    assert sorted(out.column("client").to_pylist()) == [100, 101]


def preprocessor(**columns) -> TransactionPreprocessor:
    mapping = {"client_id": "client", "event_time": "ts", "amount": "amt", "mcc": "mcc", **columns}
    return TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**mapping), max_length=8, min_events=1))


def dates_frame(dates: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"client": ["a"] * len(dates), "ts": dates, "amt": [1.0] * len(dates), "mcc": ["5411"] * len(dates)}
    )


@pytest.mark.parametrize(
    "dates, fmt, first",
    [
        (["03/04/2024", "05/04/2024"], "%d/%m/%Y", "2024-04-03"),  # told day-first
        (["03/04/2024", "05/04/2024"], "%m/%d/%Y", "2024-03-04"),  # told month-first
        (["03/04/2024", "13/04/2024"], None, "2024-04-03"),  # 13 can only be a day: day-first
        (["04/03/2024", "04/13/2024"], None, "2024-04-03"),  # 13 can only be a day: month-first
        (["01/01/2024", "02/02/2024"], None, "2024-01-01"),  # both orders give the same dates
        (["2024-04-03", "2024-04-05"], None, "2024-04-03"),  # ISO is never ambiguous
    ],
)
def test_date_order_is_decided_or_told(dates, fmt, first):
    seq = preprocessor(time_format=fmt).fit_transform(dates_frame(dates))
    times = pd.to_datetime(np.asarray(seq.table.column("event_time").combine_chunks().flatten()), unit="s")
    assert str(times.min().date()) == first


def test_blank_category_is_missing_like_empty():
    frame = dates_frame(["2024-01-01", "2024-01-02", "2024-01-03"]).assign(k_symbol=["SIPO", " ", ""])
    pre = preprocessor(categorical=["k_symbol"]).fit(frame)
    assert pre.vocabulary("k_symbol")[-1] == "SIPO" and " " not in pre.vocabulary("k_symbol")
