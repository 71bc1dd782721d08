"""validate(): every problem with its row, line, column, expected and found."""

import json

import numpy as np
import pandas as pd
import pytest

from ssl_modal.data import DataValidationError, validate, validate_frame


def _messages(report):
    return [p.message for p in report.problems]


@pytest.fixture
def amounts_schema(tmp_path):
    path = tmp_path / "amounts.schema.json"
    path.write_text(
        json.dumps(
            {
                "kind": "table",
                "columns": {
                    "text": {"dtype": "string", "min_length": 1},
                    "label": {"dtype": "integer", "nullable": True, "allowed": [1, 2, 3]},
                    "amount": {"dtype": "number", "min": 0, "unique": True},
                },
            }
        )
    )
    return path


def test_broken_text_corpus_reports_each_problem(tmp_path):
    p = tmp_path / "corpus.csv"
    p.write_text("txt,label\nhello,1\n,2\n")
    report = validate("text_corpus", p)
    assert not report.ok
    [problem] = report.problems
    assert problem.kind == "missing_column" and problem.column == "text"
    assert problem.message == "missing column 'text'; did you mean 'txt'? (found columns: txt, label)"
    p.write_text('text,label\nhello,1\n"",2\n   ,x\n"two\nlines",\nok,3\n')
    report = validate("text_corpus", p)
    assert [(q.row, q.line, q.column) for q in report.problems] == [(2, 3, "text"), (3, 4, "text")]
    assert report.problems[1].message == "row 3 (line 4), column 'text': expected a non-empty value, found '   '"
    assert report.problems[0].found == "''" and report.problems[0].file == str(p)


def test_wrong_dtype_and_rules(tmp_path, amounts_schema):
    p = tmp_path / "a.csv"
    p.write_text('text,label,amount\nhello,1,3.5\nbye,2,"12,50"\nx,9,-1\ny,1.5,NaN\nz,,3.5\n')
    report = validate(amounts_schema, p)
    msgs = _messages(report)
    assert "row 2 (line 3), column 'amount': expected number, found '12,50'" in msgs
    assert "row 4 (line 5), column 'amount': expected number, found 'NaN'" in msgs
    assert "row 3 (line 4), column 'amount': expected >= 0, found '-1'" in msgs
    assert "row 4 (line 5), column 'label': expected integer, found '1.5'" in msgs
    assert "row 3 (line 4), column 'label': expected one of 1, 2, 3, found '9'" in msgs
    assert "row 5 (line 6), column 'amount': expected unique values, found '3.5' (also in row 1)" in msgs
    assert report.n_problems == len(msgs) == 6  # row 5's empty label is allowed (nullable)
    text = str(report)
    assert text.startswith(f"FAILED: {p} does not match schema 'amounts': 6 problems")
    assert "row N = the N-th data record, 1-based, header not counted" in text


def test_raise_if_failed(tmp_path, amounts_schema):
    p = tmp_path / "a.csv"
    p.write_text("text,label,amount\nhello,1,x\n")
    report = validate(amounts_schema, p)
    with pytest.raises(DataValidationError, match="column 'amount': expected number, found 'x'") as info:
        report.raise_if_failed()
    assert isinstance(info.value, ValueError) and info.value.report is report
    p.write_text("text,label,amount\nhello,1,2\n")
    assert validate(amounts_schema, p).raise_if_failed().ok


def test_file_level_problems(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"text\ncaf\xe9\n")
    [problem] = validate("text_corpus", p).problems
    assert "latin.csv: not valid UTF-8 at line 2, column 4, byte offset 8 (byte 0xe9)" in problem.message
    p.write_bytes(b"")
    assert "file is empty (0 bytes)" in validate("text_corpus", p).problems[0].message
    p.write_text("text,label\n")
    [problem] = validate("text_corpus", p).problems
    assert problem.message == "expected at least 1 data rows, found 0"
    missing = validate("text_corpus", tmp_path / "nope.csv")
    assert "nope.csv: file not found" in missing.problems[0].message


def test_malformed_line_reported_and_rest_checked(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("text,label\nok,1\nbad,1,extra\n,2\n")
    msgs = _messages(validate("text_corpus", p))
    assert msgs == [
        "line 3: malformed CSV line: expected 2 fields, saw 3",
        "row 2 (line 4), column 'text': expected a non-empty value, found ''",
    ]


def test_many_problems_are_counted_and_capped(tmp_path, amounts_schema):
    n = 20_000
    df = pd.DataFrame({"text": ["t"] * n, "label": ["1"] * n, "amount": np.arange(n).astype(str)})
    df.loc[df.index % 4 == 1, "amount"] = "12,50"
    p = tmp_path / "big.csv"
    df.to_csv(p, index=False)
    report = validate(amounts_schema, p, max_examples=3)
    assert report.counts == {("dtype", "amount", "number"): n // 4}
    assert [q.row for q in report.problems] == [2, 6, 10]
    assert "column 'amount': expected number: 5000 rows, first 3 shown" in str(report)


def test_misnamed_optional_and_unexpected_columns(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("text,lable\nhello,1\n")
    [problem] = validate("text_corpus", p).problems
    assert problem.message.startswith("optional column 'label' not found, but 'lable' looks like a misspelling")
    schema = tmp_path / "s.schema.json"
    schema.write_text(
        json.dumps({"kind": "table", "additional_columns": False, "columns": {"text": {"dtype": "string"}}})
    )
    [problem] = validate(schema, p).problems
    assert problem.message == "column 'lable' is not in the schema (allowed: text)"


def test_datetime_boolean_pattern_primary_key(tmp_path):
    schema = tmp_path / "s.schema.json"
    schema.write_text(
        json.dumps(
            {
                "kind": "table",
                "primary_key": ["id"],
                "columns": {
                    "id": {"dtype": "integer"},
                    "ts": {"dtype": "datetime", "min": "2020-01-01"},
                    "eu": {"dtype": "datetime", "format": "%d/%m/%Y"},
                    "flag": {"dtype": "boolean"},
                    "code": {"dtype": "string", "pattern": "[A-Z]{3}"},
                },
            }
        )
    )
    p = tmp_path / "d.csv"
    p.write_text(
        "id,ts,eu,flag,code\n1,2021-05-01T10:00:00Z,31/12/2020,Yes,ABC\n"
        "1,2019-01-01,2020-12-31,maybe,abc\n2,not a date,01/02/2021,0,XYZ\n"
    )
    msgs = _messages(validate(schema, p))
    assert "row 2 (line 3), column 'ts': expected >= 2020-01-01, found '2019-01-01'" in msgs
    assert any(m.startswith("row 3 (line 4), column 'ts': expected datetime (ISO 8601") for m in msgs)
    assert "row 2 (line 3), column 'eu': expected datetime (%d/%m/%Y), found '2020-12-31'" in msgs
    assert "row 2 (line 3), column 'flag': expected boolean (true/false, yes/no, 1/0), found 'maybe'" in msgs
    assert "row 2 (line 3), column 'code': expected text matching /[A-Z]{3}/, found 'abc'" in msgs
    assert "row 2 (line 3): expected a unique (id) per row, found id='1'" in msgs
    assert len(msgs) == 6


def test_typed_formats_parquet_jsonl_and_frames(tmp_path, amounts_schema):
    df = pd.DataFrame({"text": ["a", "", "c"], "label": [1, 2, 5], "amount": [1.0, np.nan, 2.0]})
    df.to_parquet(tmp_path / "t.parquet")
    msgs = _messages(validate(amounts_schema, tmp_path / "t.parquet"))
    assert msgs == [
        "row 2, column 'text': expected a non-empty value, found ''",
        "row 3, column 'label': expected one of 1, 2, 3, found 5",
        "row 2, column 'amount': expected a non-empty value, found empty",
    ]
    assert _messages(validate_frame(amounts_schema, df)) == msgs
    (tmp_path / "t.jsonl").write_text(
        '{"text": "a", "label": 1, "amount": 1}\n\n{"text": "b", "label": 2, "amount": "12,50"}\n'
    )
    [problem] = validate(amounts_schema, tmp_path / "t.jsonl").problems
    assert problem.message == "row 2 (line 3), column 'amount': expected number, found '12,50'"


def test_json_manifest_reports_json_paths(tmp_path):
    schema = tmp_path / "clips.schema.json"
    schema.write_text(
        json.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["path", "duration"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string"},
                    "duration": {"type": "number", "exclusiveMinimum": 0},
                    "frames": {
                        "type": "array",
                        "items": {"type": "object", "required": ["t"], "properties": {"t": {"type": "number"}}},
                    },
                },
            }
        )
    )
    p = tmp_path / "clips.jsonl"
    p.write_text(
        '{"path": "a.wav", "duration": 1.5}\n{"path": "b.wav", "duration": -1}\n\n'
        '{"path": "c.wav"}\n{broken\n'
        '{"path": "d.wav", "duration": 2, "frames": [{"t": 1}, {"t": "x"}, {}]}\n'
    )
    report = validate(schema, p)
    got = {(q.row, q.line, q.path) for q in report.problems if q.kind == "json_schema"}
    assert got == {(2, 2, "$.duration"), (3, 4, "$"), (4, 6, "$.frames[1].t"), (4, 6, "$.frames[2]")}
    msgs = _messages(report)
    assert "line 5: invalid JSON at column 2: Expecting property name enclosed in double quotes" in msgs
    assert "row 4 (line 6) at $.frames[1].t: 'x' is not of type 'number'" in msgs
    assert "row 3 (line 4): 'duration' is a required property" in msgs
    (tmp_path / "one.json").write_text('{"path": "a", "duration": "1"}')
    [problem] = validate(schema, tmp_path / "one.json").problems
    assert problem.message == "$.duration: '1' is not of type 'number'" and problem.row is None
    (tmp_path / "t.csv").write_text("path,duration\na,1\n")
    [problem] = validate(schema, tmp_path / "t.csv").problems
    assert "JSON Schema for JSON/JSONL manifests, but this is a csv file" in problem.message
