"""Declarative schemas in data_schemas/: finding, loading, and vectorised table checks.

Two kinds of schema file, both named `data_schemas/<name>.schema.json`:
- table schemas (`"kind": "table"`): columns with dtype, required, nullable, min/max, min_length,
  max_length, allowed, unique, pattern, format; their structure is checked against
  data_schemas/meta/table.schema.json. Used for CSV/TSV/Parquet/JSONL/JSON tables.
- plain JSON Schema files (draft 2020-12 unless `$schema` says otherwise) describing ONE record
  of a JSON/JSONL manifest. Used with `jsonschema` by `validate`.
A value is missing when it is null/NaN or a string that is empty or only whitespace.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd

from .report import ValidationReport, show_value

SUFFIX = ".schema.json"
DTYPES = ("string", "integer", "number", "datetime", "boolean")
_TRUE, _FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")
_BOOL_MAP = {**{k: True for k in _TRUE}, **{k: False for k in _FALSE}}


class SchemaError(ValueError):
    """A schema that cannot be found or is itself malformed."""


def schema_dir() -> Path:
    """The schema folder: ssl_modal/schemas/ in an installed wheel (setup.py copies it there at build time),
    else data_schemas/ at the repository root (the source of truth, next to the ssl_modal package)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "schemas"
    return shipped if shipped.is_dir() else package.parent / "data_schemas"


def available_schemas() -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in schema_dir().glob(f"*{SUFFIX}"))


def find_schema(name_or_path: str | Path) -> Path:
    """A path to an existing file, or a name looked up as data_schemas/<name>.schema.json."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = schema_dir() / f"{name_or_path}{SUFFIX}"
    if candidate.is_file():
        return candidate
    names = available_schemas()
    close = difflib.get_close_matches(str(name_or_path), names, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise SchemaError(
        f"schema '{name_or_path}' not found: not a file, and no {candidate}{hint} "
        f"(available: {', '.join(names) or 'none'})"
    )


@dataclass
class Schema:
    """A loaded schema: kind is "table" or "json" (a JSON Schema for manifest records)."""

    name: str
    path: Path
    kind: str
    spec: dict


def _json_path(parts) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _explain(err: jsonschema.ValidationError) -> str:
    """Meta-schema error with a 'did you mean' for misspelt keys and dtypes."""
    where, hint = _json_path(err.absolute_path), ""
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        for key in (k for k in err.instance if k not in known):
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint += f"; unknown key '{key}'" + (f", did you mean '{close[0]}'?" if close else "")
        return f"{where}: {err.message}{hint} (allowed keys: {', '.join(known)})"
    if err.absolute_path and err.absolute_path[-1] == "dtype" and isinstance(err.instance, str):
        close = difflib.get_close_matches(err.instance, DTYPES, n=1, cutoff=0.6)
        hint = f", did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown dtype {err.instance!r}{hint} (one of {', '.join(DTYPES)})"
    return f"{where}: {err.message}"


def _check_table_spec(spec: dict) -> list[str]:
    """Structure (meta-schema) and the few rules a meta-schema cannot express."""
    meta = json.loads((schema_dir() / "meta" / "table.schema.json").read_text(encoding="utf-8"))
    errors = [_explain(e) for e in jsonschema.Draft202012Validator(meta).iter_errors(spec)]
    if errors:
        return errors
    for name, col in spec["columns"].items():
        dtypes = [col["dtype"]] if isinstance(col["dtype"], str) else col["dtype"]
        where = f"$.columns.{name}"
        orderable = {"integer", "number", "datetime"} & set(dtypes)
        for bound in ("min", "max"):
            if bound in col and not orderable:
                errors.append(f"{where}.{bound}: needs an integer, number or datetime dtype, found {dtypes}")
            elif bound in col and _ranked(dtypes) == "datetime" and not isinstance(col[bound], str):
                errors.append(f"{where}.{bound}: a datetime bound must be a string such as '2024-01-31'")
            elif bound in col and _ranked(dtypes) != "datetime" and isinstance(col[bound], str):
                errors.append(f"{where}.{bound}: expected a number, found {col[bound]!r}")
        for key in ("min_length", "max_length", "pattern"):
            if key in col and "string" not in dtypes:
                errors.append(f"{where}.{key}: only applies to string columns, found dtype {dtypes}")
        if "format" in col and "datetime" not in dtypes:
            errors.append(f"{where}.format: only applies to datetime columns, found dtype {dtypes}")
        if "pattern" in col:
            try:
                re.compile(col["pattern"])
            except re.error as exc:
                errors.append(f"{where}.pattern: invalid regular expression: {exc}")
    for key in spec.get("primary_key", []):
        if key not in spec["columns"]:
            errors.append(f"$.primary_key: '{key}' is not one of the columns {list(spec['columns'])}")
    return errors


def load_schema(name_or_path: str | Path) -> Schema:
    """Find, parse and check a schema; SchemaError lists every problem with its JSON path."""
    path = find_schema(name_or_path)
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise SchemaError(f"{path}: a schema must be a JSON object, found {type(spec).__name__}")
    if spec.get("kind") == "table":
        errors, kind = _check_table_spec(spec), "table"
    else:
        cls = jsonschema.validators.validator_for(spec, default=jsonschema.Draft202012Validator)
        errors = [f"{_json_path(e.absolute_path)}: {e.message}" for e in cls(cls.META_SCHEMA).iter_errors(spec)]
        kind = "json"
    if errors:
        raise SchemaError(f"{path}: invalid {kind} schema:\n  " + "\n  ".join(errors))
    return Schema(name, path, kind, spec)


# ---------------------------------------------------------------- vectorised table checks


def _ranked(dtypes: list[str]) -> str:
    """The dtype used for min/max/allowed/unique: the first orderable one, else the first."""
    return next((d for d in dtypes if d in ("integer", "number", "datetime")), dtypes[0])


def _mask(x) -> np.ndarray:
    return pd.Series(x).to_numpy(dtype=bool, na_value=False, copy=True)


def _is_str_col(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype)


def text_mask(s: pd.Series) -> np.ndarray:
    """True where the value is a string (object columns from JSON may mix types)."""
    if s.dtype == object:
        return _mask(s.map(type, na_action="ignore").eq(str))
    return ~_mask(s.isna()) if pd.api.types.is_string_dtype(s.dtype) else np.zeros(len(s), dtype=bool)


def _texts(s: pd.Series, is_text: np.ndarray) -> pd.Series:
    """Only the string values (others NaN), so the .str accessor is safe on mixed columns."""
    return s.where(is_text) if s.dtype == object else s


def missing_mask(s: pd.Series) -> np.ndarray:
    """Null/NaN values and strings that are empty or only whitespace."""
    missing = _mask(s.isna())
    is_text = text_mask(s)
    if is_text.any():
        missing |= is_text & _mask(_texts(s, is_text).str.strip().eq(""))
    return missing


def parse(s: pd.Series, dtype: str, fmt: str | None = None) -> tuple[np.ndarray, pd.Series]:
    """(ok mask, parsed values) for one dtype; strings are parsed, typed columns taken as they are."""
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    if dtype == "string":
        return text_mask(s), s
    if dtype in ("number", "integer"):
        if numeric:
            parsed = s.astype("float64")
        else:
            text = s.astype(str).str.strip() if _is_str_col(s) else s
            parsed = pd.to_numeric(text, errors="coerce").astype("float64")
        values = parsed.to_numpy(dtype=float, na_value=np.nan)
        ok = np.isfinite(values)
        if dtype == "integer":
            ok &= np.mod(np.where(ok, values, 0.0), 1.0) == 0
        return ok, parsed
    if dtype == "boolean":
        if pd.api.types.is_bool_dtype(s.dtype):
            return ~_mask(s.isna()), s
        parsed = s.astype(str).str.strip().str.lower().map(_BOOL_MAP)
        return _mask(parsed.notna()), parsed
    # datetime
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        parsed = s if getattr(s.dtype, "tz", None) else s.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(s.astype(str).str.strip(), errors="coerce", format=fmt or "ISO8601", utc=True)
    return _mask(parsed.notna()), parsed


def _expected(dtypes: list[str], fmt: str | None) -> str:
    names = {
        "datetime": f"datetime ({fmt or 'ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00'})",
        "boolean": "boolean (true/false, yes/no, 1/0)",
    }
    return " or ".join(names.get(d, d) for d in dtypes)


def _key(s: pd.Series, dtypes: list[str], fmt: str | None) -> pd.Series:
    """Values as compared by allowed/unique: parsed for one dtype, stripped text for unions."""
    if len(dtypes) == 1 and dtypes[0] != "string":
        return parse(s, dtypes[0], fmt)[1]
    return s.astype(str).str.strip()


def _check_column(report: ValidationReport, s: pd.Series, name: str, col: dict, lines: np.ndarray | None) -> None:
    dtypes = [col["dtype"]] if isinstance(col["dtype"], str) else list(col["dtype"])
    fmt = col.get("format")
    missing = missing_mask(s)
    if not col.get("nullable", False):
        report.add_rows("missing_value", name, "a non-empty value", missing, s, lines)
    present = ~missing
    oks, parsed = {}, {}
    for d in dtypes:
        oks[d], parsed[d] = parse(s, d, fmt)
    ok = np.logical_or.reduce([oks[d] for d in dtypes])
    report.add_rows("dtype", name, _expected(dtypes, fmt), present & ~ok, s, lines)
    valid = present & ok
    ranked = _ranked(dtypes)
    rank_ok = valid & oks[ranked]
    for bound, op in (("min", np.less), ("max", np.greater)):
        if bound not in col:
            continue
        limit = pd.Timestamp(col[bound]) if ranked == "datetime" else float(col[bound])
        if isinstance(limit, pd.Timestamp) and limit.tz is None:
            limit = limit.tz_localize("UTC")
        bad = rank_ok & _mask(op(parsed[ranked], limit))
        sign = ">=" if bound == "min" else "<="
        report.add_rows(bound, name, f"{sign} {col[bound]}", bad, s, lines)
    if "string" in dtypes and oks["string"].any():
        is_text = valid & oks["string"]
        texts = _texts(s, oks["string"])
        lengths = texts.str.len().to_numpy(dtype=float, na_value=np.nan)
        if "min_length" in col:
            bad = is_text & (lengths < col["min_length"])
            report.add_rows("min_length", name, f"at least {col['min_length']} characters", bad, s, lines)
        if "max_length" in col:
            bad = is_text & (lengths > col["max_length"])
            report.add_rows(
                "max_length",
                name,
                f"at most {col['max_length']} characters",
                bad,
                s,
                lines,
                detail=lambda idx: [f" ({int(lengths[i])} characters)" for i in idx],
            )
        if "pattern" in col:
            bad = is_text & ~_mask(texts.str.fullmatch(col["pattern"]))
            report.add_rows("pattern", name, f"text matching /{col['pattern']}/", bad, s, lines)
    if "allowed" in col or col.get("unique"):
        key = _key(s, dtypes, fmt)
    if "allowed" in col:
        allowed = _key(pd.Series(col["allowed"], dtype=object), dtypes, fmt)
        bad = valid & ~_mask(key.isin(allowed.dropna()))
        shown = ", ".join(show_value(v) for v in col["allowed"][:10])
        more = ", ..." if len(col["allowed"]) > 10 else ""
        report.add_rows("allowed", name, f"one of {shown}{more}", bad, s, lines)
    if col.get("unique"):
        dup = np.zeros(len(s), dtype=bool)
        dup[np.flatnonzero(valid)[_mask(key[valid].duplicated(keep="first"))]] = True
        first = key[valid].drop_duplicates()
        first_row = pd.Series(first.index.to_numpy() + 1, index=first.to_numpy())
        report.add_rows(
            "unique",
            name,
            "unique values",
            dup,
            s,
            lines,
            detail=lambda idx: [f" (also in row {first_row.get(key.iloc[i])})" for i in idx],
        )


def check_table(report: ValidationReport, df: pd.DataFrame, spec: dict, lines: np.ndarray | None) -> None:
    """Add every problem of `df` against table schema `spec` to `report` (no per-row Python loops)."""
    columns, found = spec["columns"], [str(c) for c in df.columns]
    df = df.set_axis(found, axis=1)
    categorical = [c for c in found if isinstance(df[c].dtype, pd.CategoricalDtype)]
    if categorical:  # Parquet dictionary columns: check the values they hold
        df = df.astype({c: object for c in categorical})
    extra = [c for c in found if c not in columns]
    for name, col in columns.items():
        if name in df.columns:
            continue
        close = difflib.get_close_matches(name, extra, n=1, cutoff=0.6 if col.get("required", True) else 0.8)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f"(found columns: {', '.join(found) or 'none'})"
        if col.get("required", True):
            report.add(
                "missing_column",
                f"missing column '{name}'{hint} {listing}",
                column=name,
                expected=f"a column named '{name}'",
                found=", ".join(found),
            )
        elif close:
            report.add(
                "misnamed_column",
                f"optional column '{name}' not found, but '{close[0]}' looks like a misspelling of it {listing}",
                column=name,
                expected=f"a column named '{name}'",
                found=close[0],
            )
    if not spec.get("additional_columns", True):
        for name in extra:
            report.add(
                "unexpected_column",
                f"column '{name}' is not in the schema (allowed: {', '.join(columns)})",
                column=name,
                expected="no such column",
                found=name,
            )
    if len(df) < spec.get("min_rows", 1):
        report.add(
            "too_few_rows",
            f"expected at least {spec.get('min_rows', 1)} data rows, found {len(df)}",
            expected=f">= {spec.get('min_rows', 1)} rows",
            found=str(len(df)),
        )
    for name, col in columns.items():
        if name in df.columns:
            _check_column(report, df[name], name, col, lines)
    key = [c for c in spec.get("primary_key", []) if c in df.columns]
    if key and len(key) == len(spec["primary_key"]):
        dup = df.duplicated(subset=key, keep="first").to_numpy()
        report.add_rows(
            "primary_key",
            None,
            f"a unique ({', '.join(key)}) per row",
            dup,
            lambda idx: [", ".join(f"{k}={show_value(df[k].iloc[i])}" for k in key) for i in idx],
            lines,
        )
