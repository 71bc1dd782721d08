import gzip

import pandas as pd
import pytest

from ssl_modal.data import DataFileNotFoundError, DataValidationError, read_table
from ssl_modal.data.readers import check_utf8


def test_read_csv_keeps_na_text_and_reads_numbers(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,amount\nNA,1.5\nNone,\n")
    df = read_table(p)
    assert df["text"].tolist() == ["NA", "None"]  # only empty fields are missing
    assert df["amount"].iloc[0] == 1.5 and pd.isna(df["amount"].iloc[1])


def test_file_not_found_is_both_error_types(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv: file not found"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(DataValidationError):
        read_table(tmp_path / "missing.csv")
    assert issubclass(DataFileNotFoundError, ValueError)


def test_unknown_extension(tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_bytes(b"x")
    with pytest.raises(DataValidationError, match=r"unknown file extension '\.xlsx'; supported: \.csv"):
        read_table(p)


def test_non_utf8_names_line_and_byte_offset(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"text\nok\ncaf" + b"\xe9 au lait\n")
    with pytest.raises(
        DataValidationError, match=r"latin\.csv: not valid UTF-8 at line 3, column 4, byte offset 11 \(byte 0xe9\)"
    ):
        read_table(p)


def test_utf8_check_across_chunk_boundaries(tmp_path):
    p = tmp_path / "u.csv"
    p.write_bytes(("text\n" + "é" * 50 + "\n").encode() + b"\xff\n")
    for chunk in (1, 2, 3, 7):  # multi-byte characters split between chunks are fine
        with pytest.raises(DataValidationError, match="line 3, column 1, byte offset 106"):
            check_utf8(p, chunk_size=chunk)
    p.write_bytes(("text\n" + "é" * 50 + "\n").encode())
    check_utf8(p, chunk_size=3)


def test_empty_and_header_only(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"e\.csv: file is empty \(0 bytes\)"):
        read_table(p)
    p.write_text("\n  \n")
    with pytest.raises(DataValidationError, match="file is empty \\(only whitespace\\)"):
        read_table(p)
    p.write_text("text,label\n")
    with pytest.raises(DataValidationError, match="no data rows \\(only a header: text, label\\)"):
        read_table(p)
    assert read_table(p, allow_empty=True).columns.tolist() == ["text", "label"]


def test_missing_column_suggests_closest(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("client_id,amnt\n1,2\n")
    with pytest.raises(
        DataValidationError,
        match=r"missing column 'amount'; did you mean 'amnt'\? "
        r"\(found columns: client_id, amnt\)",
    ):
        read_table(p, columns=["client_id", "amount"])
    assert read_table(p, columns=["amnt"]).columns.tolist() == ["amnt"]


def test_malformed_csv_line_is_named(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('a,b\n1,2\n"x\ny",3\n4,5,6\n7,8\n')
    with pytest.raises(DataValidationError, match="line 5: malformed CSV line: expected 2 fields, saw 3"):
        read_table(p)


def test_other_formats(tmp_path):
    df = pd.DataFrame({"text": ["a", "b"], "label": [1, 2]})
    df.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), df)
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": 2}\n')
    assert read_table(tmp_path / "t.jsonl")["label"].tolist() == [1, 2]
    (tmp_path / "t.json").write_text('[{"text": "a"}, {"text": "b"}]')
    assert read_table(tmp_path / "t.json")["text"].tolist() == ["a", "b"]
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        f.write("text,label\na,1\n")
    assert read_table(tmp_path / "t.csv.gz")["text"].tolist() == ["a"]
    (tmp_path / "obj.json").write_text('{"text": "a"}')
    with pytest.raises(DataValidationError, match="expected a JSON array of records for a table, found a JSON dict"):
        read_table(tmp_path / "obj.json")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(DataValidationError, match="line 2: invalid JSON at column 10"):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataValidationError, match="bad.parquet: could not read as Parquet"):
        read_table(tmp_path / "bad.parquet")


def test_rows_longer_than_header(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2,3\n4,5,6\n")
    with pytest.raises(
        DataValidationError,
        match=r"line 2 has more fields than the header line "
        r"\(2 columns: a, b\)",
    ):
        read_table(p)
