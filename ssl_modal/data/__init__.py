"""Data validation against data_schemas/ and shared readers with clear error messages."""

from .readers import DataFileNotFoundError, DataValidationError, read_table
from .report import Problem, ValidationReport
from .schema import Schema, SchemaError, available_schemas, load_schema, schema_dir
from .validate import main_validate, validate, validate_frame

__all__ = [
    "DataFileNotFoundError",
    "DataValidationError",
    "Problem",
    "Schema",
    "SchemaError",
    "ValidationReport",
    "available_schemas",
    "load_schema",
    "main_validate",
    "read_table",
    "schema_dir",
    "validate",
    "validate_frame",
]
