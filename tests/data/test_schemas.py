"""Every shipped schema is well-formed and its example passes; schema lookup and the CLI entry."""

import json

import pytest

from ssl_modal.data import SchemaError, available_schemas, load_schema, main_validate, schema_dir, validate

SCHEMAS = available_schemas()


def test_schema_dir_is_repo_root_data_schemas():
    assert schema_dir().name == "data_schemas"
    assert (schema_dir().parent / "ssl_modal").is_dir()
    assert "text_corpus" in SCHEMAS


@pytest.mark.parametrize("name", SCHEMAS)
def test_shipped_schema_loads_and_its_example_is_valid(name):
    schema = load_schema(name)  # checked against the meta-schema / JSON Schema meta-schema
    examples = sorted((schema_dir() / "examples").glob(f"{name}.*"))
    assert examples, f"data_schemas/examples/{name}.<ext> is missing"
    for example in examples:
        report = validate(schema, example)
        assert report.ok, str(report)
        assert report.n_rows and report.n_rows > 0


def test_text_corpus_example_has_labels_and_unlabelled_rows():
    report = validate("text_corpus", schema_dir() / "examples" / "text_corpus.csv")
    assert report.ok and report.n_rows == 7
    assert str(report).startswith("OK: ") and "7 rows" in str(report)


def test_invalid_table_schema_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.schema.json"
    bad.write_text(
        json.dumps({"kind": "table", "columns": {"a": {"dtype": "strin"}, "b": {"dtype": "number", "nulable": True}}})
    )
    with pytest.raises(SchemaError) as info:
        load_schema(bad)
    msg = str(info.value)
    assert "$.columns.a.dtype: unknown dtype 'strin', did you mean 'string'?" in msg
    assert "$.columns.b" in msg and "unknown key 'nulable', did you mean 'nullable'?" in msg


def test_semantic_schema_rules(tmp_path):
    bad = tmp_path / "bad.schema.json"
    bad.write_text(
        json.dumps(
            {
                "kind": "table",
                "primary_key": ["z"],
                "columns": {
                    "a": {"dtype": "string", "min": 3},
                    "b": {"dtype": "number", "min_length": 2},
                    "c": {"dtype": "string", "pattern": "("},
                },
            }
        )
    )
    with pytest.raises(SchemaError) as info:
        load_schema(bad)
    msg = str(info.value)
    assert "$.columns.a.min: needs an integer, number or datetime dtype" in msg
    assert "$.columns.b.min_length: only applies to string columns" in msg
    assert "$.columns.c.pattern: invalid regular expression" in msg
    assert "$.primary_key: 'z' is not one of the columns" in msg


def test_invalid_json_schema_is_rejected(tmp_path):
    bad = tmp_path / "m.schema.json"
    bad.write_text(json.dumps({"type": "objekt"}))
    with pytest.raises(SchemaError, match=r"invalid json schema:\n  \$\.type: 'objekt' is not valid"):
        load_schema(bad)


def test_unknown_schema_name_suggests_closest():
    with pytest.raises(SchemaError, match="schema 'text_corpos' not found.*did you mean 'text_corpus'"):
        load_schema("text_corpos")


def test_main_validate_exit_codes(tmp_path, capsys):
    good = schema_dir() / "examples" / "text_corpus.csv"
    assert main_validate("text_corpus", str(good)) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nhello\n\n   \n")
    assert main_validate("text_corpus", str(bad)) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "row 2 (line 4), column 'text': expected a non-empty value, found '   '" in out
    assert main_validate("nope", str(bad)) == 2
    assert "schema 'nope' not found" in capsys.readouterr().err
