"""Text inputs to `ssl-modal embed`: empty cells and nulls, wrong columns, other domains' files."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from .conftest import Case, params, run_case, write_csv

TEXTS = "id,text,n\n1,first text,4\n2,,5\n3,third text,6\n"


def embed(model: str, name: str, content: str | None = None, *extra: str, encoding: str = "utf-8"):
    def make(tmp):
        if content is not None:
            write_csv(tmp / name, content, encoding)
        return ["embed", f"{{{model}}}", str(tmp / name), "-o", "{out}", *extra]

    return make


def parquet_with_null(tmp):
    pd.DataFrame({"text": ["a", None, "c"]}).to_parquet(tmp / "t.parquet")
    return ["embed", "{text}", str(tmp / "t.parquet"), "-o", "{out}"]


CASES = [
    Case(
        "empty-cell",
        embed("text", "t.csv", TEXTS),
        2,
        r"t\.csv: 1 of 3 texts in column 'text' are empty or missing \(data rows 2\); pass --on-error skip",
    ),
    Case(
        "empty-cell-skipped",
        embed("text", "t.csv", TEXTS, "--on-error", "skip"),
        0,
        r"1 of 3 texts .*skipped.*wrote 2 embeddings",
    ),
    Case("whitespace-only-text", embed("text", "t.csv", "text\nhello\n   \n"), 2, r"empty or missing \(data rows 2\)"),
    Case("null-in-parquet", parquet_with_null, 2, r"t\.parquet: 1 of 3 texts .*\(data rows 2\)"),
    Case("all-empty", embed("text", "t.csv", 'text,x\n"",1\n" ",2\n'), 2, r"2 of 2 texts .* empty or missing"),
    Case(
        "numeric-column",
        embed("text", "t.csv", TEXTS, "--column", "n"),
        2,
        r"column 'n': expected text, found int values \(3 rows; first: data row 1: 4\)",
    ),
    Case(
        "txt-blank-line",
        embed("text", "t.txt", "one line\n\nthird line\n"),
        2,
        r"data rows \(the line number in a \.txt file\) 2",
    ),
    Case("txt-crlf-works", embed("text", "t.txt", "one line\r\ntwo lines\r\n"), 0, r"wrote 2 embeddings"),
    Case(
        "quoted-newline-works",
        embed("text", "t.csv", 'text\n"a text\nover two lines"\nplain\n'),
        0,
        r"wrote 2 embeddings",
    ),
    Case(
        "no-text-column",
        embed("text", "t.csv", "client,amt\nc1,3\n"),
        2,
        r"text column \(--column\) 'text' is not a column \(found columns: client, amt\)",
    ),
    Case("text-column-typo", embed("text", "t.csv", "txt\nhello\n", "--column", "text_"), 2, r"did you mean 'txt'"),
    Case(
        "jsonl-broken-line",
        embed("text", "t.jsonl", '{"text": "a"}\n{"text": "b"\n'),
        2,
        r"t\.jsonl: 1 malformed line\(s\): line 2: invalid JSON",
    ),
    Case("header-only", embed("text", "t.csv", "text\n"), 2, r"t\.csv: no data rows"),
    Case("word-file", embed("text", "t.docx", "PK"), 2, r"unsupported file type '\.docx'.*\.txt"),
    Case("bom-and-crlf-csv", embed("text", "t.csv", "\ufefftext\r\nhello\r\nworld\r\n"), 0, r"wrote 2 embeddings"),
    Case(
        "transactions-model-on-text-file",
        embed("transactions", "t.txt", "some words\n"),
        2,
        r"this is a transactions model: it embeds a transactions table with the columns it was trained on "
        r"\(client, ts, amt, mcc, type, forward, tx\); .*unknown file extension '\.txt'",
    ),
    Case(
        "transactions-model-on-text-csv",
        embed("transactions", "t.csv", TEXTS),
        2,
        r"this is a transactions model: it expects .*; missing \['client', 'ts', 'amt', 'mcc'",
    ),
    Case("audio-model-on-text-csv", embed("audio", "t.csv", TEXTS), 2, r"t\.csv: no path column 'path'"),
    Case(
        "aligner-without-column",
        embed("aligner", "t.csv", TEXTS),
        2,
        r"an aligner embeds one column: --column <caption column> for texts or --column <image path column>",
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_text_inputs(case, tmp_path, capsys, models):
    run_case(case, tmp_path, capsys, models)


def test_skipped_rows_keep_their_row_numbers(tmp_path, models):
    from ssl_modal.cli import main

    write_csv(tmp_path / "t.csv", TEXTS)
    assert (
        main(
            [
                "embed",
                str(models["text"]),
                str(tmp_path / "t.csv"),
                "-o",
                str(tmp_path / "e.parquet"),
                "--on-error",
                "skip",
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "e.parquet").column("row").to_pylist() == [1, 3]
    assert (
        main(
            [
                "embed",
                str(models["text"]),
                str(tmp_path / "t.csv"),
                "-o",
                str(tmp_path / "i.parquet"),
                "--on-error",
                "skip",
                "--id-column",
                "id",
            ]
        )
        == 0
    )
    ids = pq.read_table(tmp_path / "i.parquet").column("id")
    assert ids.to_pylist() == [1, 3] and str(ids.type) == "int64"
