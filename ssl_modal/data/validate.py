"""`validate(schema, file)`: check a data file against a schema in data_schemas/ and report every problem.

    report = validate("text_corpus", "corpus.csv")   # or a path to any *.schema.json
    print(report)                                     # grouped, capped, with rows and lines
    report.raise_if_failed()                          # DataValidationError(ValueError)

Table schemas check CSV/TSV/Parquet/JSONL/JSON tables; JSON Schema files check each record of a
JSONL file, each element of a JSON array, or a single JSON object. Problems in the file itself
(missing, empty, not UTF-8, malformed lines) are reported the same way, so nothing is raised
except SchemaError for a schema that cannot be found or is malformed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import pandas as pd

from .readers import DataValidationError, check_file, read_frame, read_json_document, read_jsonl_records
from .report import Problem, ValidationReport, show_value
from .schema import Schema, SchemaError, check_table, load_schema


def _as_schema(schema: str | Path | Schema) -> Schema:
    return schema if isinstance(schema, Schema) else load_schema(schema)


def _check_manifest(report: ValidationReport, schema: Schema, file: str | Path) -> None:
    path, fmt, gz = check_file(file)
    if fmt == "jsonl":
        records, lines, parse_errors = read_jsonl_records(path, gz)
        single = False
        for line, message in parse_errors:
            report.add("parse", f"line {line}: {message}", line=line, expected="one JSON value per line", found=message)
    elif fmt == "json":
        document = read_json_document(path, gz)
        single = not isinstance(document, list)
        records, lines = ([document] if single else document), None
    else:
        raise DataValidationError(
            f"{path}: schema '{schema.name}' is a JSON Schema for JSON/JSONL manifests, but this is a {fmt} file"
        )
    report.n_rows = len(records)
    if not records and not report.problems:
        report.add("empty", f"{path}: no records", expected="at least one record", found="none")
    cls = jsonschema.validators.validator_for(schema.spec, default=jsonschema.Draft202012Validator)
    validator = cls(schema.spec, format_checker=cls.FORMAT_CHECKER)
    for i, record in enumerate(records):
        for err in validator.iter_errors(record):
            row = None if single else i + 1
            at_line = int(lines[i]) if lines is not None else None
            column = str(err.absolute_path[0]) if err.absolute_path else None
            found = (
                f"keys {sorted(err.instance)}"
                if err.validator == "required" and isinstance(err.instance, dict)
                else show_value(err.instance)
            )
            expected = f"{err.validator} {show_value(err.validator_value)}"
            where = Problem(row=row, line=at_line, path=err.json_path).where() or "$"
            message = f"{where}: {err.message}"
            report.add(
                "json_schema",
                message,
                column=column,
                expected=expected,
                found=found,
                row=row,
                line=at_line,
                path=err.json_path,
            )


def _apply_mapping(report: ValidationReport, schema: Schema, df: pd.DataFrame, mapping: dict) -> pd.DataFrame:
    """Rename the file's columns to the schema's names ({schema column: file column}); unknown names are problems."""
    known = list(schema.spec.get("columns", {}))
    for key, column in mapping.items():
        if key not in known:
            raise SchemaError(
                f"column mapping '{key}={column}': '{key}' is not a column of schema '{schema.name}' "
                f"(its columns: {', '.join(known)})"
            )
        if column not in df.columns:
            report.add(
                "mapping",
                f"column '{column}' (mapped to '{key}') is not in the file",
                column=column,
                expected=f"a column '{column}'",
                found=", ".join(map(str, df.columns)),
            )
    return df.rename(columns={column: key for key, column in mapping.items()})


def validate(
    schema: str | Path | Schema, file: str | Path, *, max_examples: int = 5, mapping: dict[str, str] | None = None
) -> ValidationReport:
    """Check `file` against a schema name (data_schemas/<name>.schema.json) or schema path.

    `mapping` ({schema column: file column}, e.g. {"amount": "amt"}) reads a file whose columns have other
    names, as a recipe's `columns:` block does. Every problem is reported; per kind of problem all are counted
    and the first `max_examples` are kept with row, line, column, expected and found. Raises SchemaError only
    for a bad schema (or a mapping naming a column the schema does not have).
    """
    schema = _as_schema(schema)
    report = ValidationReport(file=str(file), schema=schema.name, max_examples=max_examples)
    if mapping and schema.kind == "json":
        raise SchemaError(f"schema '{schema.name}' describes JSON manifests: a column mapping applies to tables only")
    try:
        if schema.kind == "json":
            _check_manifest(report, schema, file)
            return report
        df, lines, parse_errors, _ = read_frame(file, as_text=True)
    except DataValidationError as exc:
        report.add("file", str(exc), expected="a readable data file", found=type(exc).__name__)
        return report
    if mapping:
        df = _apply_mapping(report, schema, df, mapping)
    for line, message in parse_errors:
        report.add("parse", f"line {line}: {message}", line=line, expected="a well-formed line", found=message)
    report.n_rows = len(df)
    check_table(report, df, schema.spec, lines)
    return report


def validate_frame(
    schema: str | Path | Schema, df: pd.DataFrame, *, name: str = "<DataFrame>", max_examples: int = 5
) -> ValidationReport:
    """Check an in-memory DataFrame against a table schema (rows are 1-based positions)."""
    schema = _as_schema(schema)
    if schema.kind != "table":
        raise SchemaError(f"schema '{schema.name}' is a JSON Schema for manifests, not a table schema")
    report = ValidationReport(file=name, schema=schema.name, n_rows=len(df), max_examples=max_examples)
    check_table(report, df.reset_index(drop=True), schema.spec, None)
    return report


def main_validate(schema: str, file: str, mapping: dict[str, str] | None = None) -> int:
    """CLI entry: print the report; exit code 0 valid, 1 problems, 2 schema missing or malformed."""
    try:
        report = validate(schema, file, mapping=mapping)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1
