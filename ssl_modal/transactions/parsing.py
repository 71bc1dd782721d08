"""Vectorised parsing of the mapped columns with errors that name the column, rows and values.

Rows in messages are 1-based data rows: the first row after a CSV header (or the first Parquet row) is row 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ssl_modal.data.readers import DataValidationError

SHOW = 5  # offending rows quoted in an error message


def _rows(bad: np.ndarray, values: pd.Series) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(f"data row {i + 1}: {values.iloc[i]!r}" for i in idx[:SHOW])
    more = f" (and {len(idx) - SHOW} more)" if len(idx) > SHOW else ""
    return f"{len(idx)} row(s) ({shown}{more})"


def _missing(s: pd.Series) -> np.ndarray:
    miss = s.isna().to_numpy().copy()
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        miss |= (s.astype(str).str.strip() == "").to_numpy()
    return miss


def parse_amount(
    s: pd.Series, fmt: str | None, column: str, source: str, role: str = "amount", allow_missing: bool = False
) -> np.ndarray:
    """float64 amounts; `fmt` "currency" strips currency signs/thousands commas, "decimal_comma" reads
    1.234,50. Anything left unparsable (or empty, unless allow_missing: then NaN) raises naming the
    (1-based data) rows."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        text = s
    else:
        text = s.astype(str).str.strip()
        if fmt == "currency":
            text = text.str.replace(r"[$€£¥\s,]", "", regex=True)
        elif fmt == "decimal_comma":
            text = text.str.replace(r"[\s.]", "", regex=True).str.replace(",", ".", regex=False)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = _missing(s)
    bad = ~np.isfinite(values) & ~missing
    if bad.any():
        raw = s.astype(str)
        hint = ""
        if raw[bad].str.contains(r"^\s*-?\d+,\d{1,2}\s*$", regex=True).any():
            hint = "; values look like decimal commas: set columns.amount_format: decimal_comma"
        elif raw[bad].str.contains(r"[$€£¥]", regex=True).any():
            hint = "; values carry a currency sign: set columns.amount_format: currency"
        hint = hint if role == "amount" else ""
        raise DataValidationError(
            f"{source}: column '{column}' (columns.{role}): expected a number, found "
            f"non-numeric values in {_rows(bad, s)}{hint}"
        )
    if missing.any() and not allow_missing:
        raise DataValidationError(
            f"{source}: column '{column}' (columns.{role}): expected a number, found "
            f"empty values in {_rows(missing, s)}"
        )
    return values


def hours_per_unit(kind: str) -> float:
    """Hours in one unit of a time column parsed by `parse_time` (kind "days" or "seconds")."""
    return 24.0 if kind == "days" else 1 / 3600.0


def parse_time(frame: pd.DataFrame, columns: list[str], fmt: str | None, source: str) -> tuple[np.ndarray, str]:
    """(float64 times, kind): kind "seconds" (since the epoch, UTC) or "days" (day offsets).
    Several columns are joined with spaces before parsing. Unparsable or empty values raise."""
    name = columns[0] if len(columns) == 1 else columns
    label = f"column '{name}'" if len(columns) == 1 else f"columns {columns}"
    if len(columns) == 1:
        s = frame[columns[0]]
    else:
        s = frame[columns[0]].astype(str)
        for c in columns[1:]:
            s = s + " " + frame[c].astype(str)
    missing = _missing(s) if len(columns) == 1 else np.zeros(len(s), bool)
    if len(columns) > 1:
        for c in columns:
            missing |= _missing(frame[c])
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    if fmt in ("days", "seconds"):
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        kind, expected = fmt, f"a number ({fmt} offset, time_format: {fmt})"
    elif pd.api.types.is_datetime64_any_dtype(s.dtype):
        t = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dtype, "tz", None) else s
        values = _epoch_seconds(t)
        kind, expected = "seconds", "a datetime"
    elif numeric and fmt is None:
        raise DataValidationError(
            f"{source}: {label} (columns.event_time) is numeric; say what it holds with "
            "columns.time_format: days (day offsets), seconds (epoch seconds) or a "
            "strftime format such as %y%m%d"
        )
    else:
        text = s.astype(str).str.strip() if numeric else s
        if numeric and pd.api.types.is_float_dtype(s.dtype):  # 930101.0 -> "930101"
            text = s.astype("Int64").astype(str)
        dayfirst = None if fmt or numeric else day_first(text, label, source)
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True, dayfirst=bool(dayfirst))
        values = _epoch_seconds(parsed.dt.tz_localize(None))
        kind = "seconds"
        expected = f"a datetime in format '{fmt}'" if fmt else "a datetime (format inferred from the first value)"
    bad = ~np.isfinite(values) & ~missing
    if bad.any():
        shown = s if len(columns) == 1 else s.rename(" ".join(columns))
        raise DataValidationError(
            f"{source}: {label} (columns.event_time): expected {expected}, found "
            f"unparsable values in {_rows(bad, shown)}; set columns.time_format"
        )
    if missing.any():
        raise DataValidationError(
            f"{source}: {label} (columns.event_time): expected {expected}, found empty values in {_rows(missing, s)}"
        )
    return values, kind


_DMY = r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{2}|\d{4})\b"


def day_first(text: pd.Series, label: str, source: str) -> bool | None:
    """For dates written nn/nn/yyyy (or with . or -): True when day-first, False when month-first, None when
    not such dates. Both orders possible for every value (all numbers <= 12) is refused, and so is a column
    where some values can only be day-first and others only month-first; either way columns.time_format decides."""
    parts = text.astype(str).str.extract(_DMY)
    found = parts[0].notna().to_numpy()
    if not found.any():
        return None
    first, second = parts[0][found].astype(int).to_numpy(), parts[2][found].astype(int).to_numpy()
    rows = np.flatnonzero(found)
    sep = parts[1][found].iloc[0]
    year = "%Y" if len(parts[3][found].iloc[0]) == 4 else "%y"
    formats = f"'%d{sep}%m{sep}{year}' (day first) or '%m{sep}%d{sep}{year}' (month first)"
    if (first > 12).any() and (second > 12).any():

        def show(sel):
            return ", ".join(f"data row {rows[i] + 1}: {text.iloc[rows[i]]!r}" for i in np.flatnonzero(sel)[:3])

        raise DataValidationError(
            f"{source}: {label} (columns.event_time): expected one date order, found day-first dates "
            f"({show(first > 12)}) and month-first dates ({show(second > 12)}); fix the column, then set "
            f"columns.time_format: {formats}"
        )
    if (first > 12).any():
        return True
    if (second > 12).any():
        return False
    if (first == second).all():
        return False  # 01/01, 02/02, ...: both orders give the same dates
    raise DataValidationError(
        f"{source}: {label} (columns.event_time): dates such as {text.iloc[rows[0]]!r} (data row {rows[0] + 1}) read "
        f"as different days day-first and month-first, and no value tells which (every number <= 12); "
        f"set columns.time_format: {formats}"
    )


def _epoch_seconds(t: pd.Series) -> np.ndarray:
    ns = t.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out = ns.astype(np.float64) / 1e9
    out[t.isna().to_numpy()] = np.nan
    return out


def as_text(uniques) -> np.ndarray:
    """Distinct raw values as vocabulary strings; integral floats lose their '.0' (5411.0 -> '5411')."""
    u = pd.Series(uniques)
    if pd.api.types.is_float_dtype(u.dtype) and len(u):
        f = u.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(f)) and np.all(np.mod(f, 1) == 0):
            return u.astype(np.int64).astype(str).to_numpy(dtype=object)
    return u.astype(str).to_numpy(dtype=object)


def factorize_text(s: pd.Series, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(codes with -1 for missing, distinct values as text) -- one Python call per distinct value at most.
    sort: codes follow the sorted distinct values (numbers numerically; mixed types by their text).
    Text that is empty or only whitespace (Berka's k_symbol " ") is missing, like an empty cell."""
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        blank = s.astype(str).str.strip().eq("").to_numpy() & s.notna().to_numpy()
        if blank.any():
            s = s.mask(blank)
    try:
        codes, uniques = pd.factorize(s, use_na_sentinel=True, sort=sort)
    except TypeError:  # mixed types cannot be compared: sort by text
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        text = as_text(uniques)
        rank = np.empty(len(text), np.int64)
        rank[np.argsort(text.astype(str), kind="stable")] = np.arange(len(text))
        return np.where(codes >= 0, rank[np.maximum(codes, 0)], -1), text[np.argsort(text.astype(str), kind="stable")]
    return codes.astype(np.int64), as_text(uniques)


def transaction_ids(frame: pd.DataFrame, column: str | None, source: str) -> np.ndarray | pa.Array:
    """The ids of the mapped column (unique, present; int64 numpy or Arrow strings) or the 0-based input
    row numbers. Duplicates (compared as text) raise naming the ids and their rows."""
    if column is None:
        return np.arange(len(frame), dtype=np.int64)
    s = frame[column]
    missing = _missing(s)
    if missing.any():
        raise DataValidationError(
            f"{source}: column '{column}' (columns.transaction_id): expected an id in every "
            f"row, found empty values in {_rows(missing, s)}"
        )
    if pd.api.types.is_integer_dtype(s.dtype):
        values = s.to_numpy(dtype=np.int64)
        if len(np.unique(values)) == len(values):
            return values
    else:
        values = pa.array(s.astype(str), from_pandas=True)
        if pc.count_distinct(values).as_py() == len(values):
            return values
    text = s.astype(str).reset_index(drop=True)
    d = text[text.duplicated(keep=False).to_numpy()]
    groups = d.groupby(d, sort=False).groups
    shown = "; ".join(
        f"{k!r} at data rows {[int(i) + 1 for i in list(v)[:SHOW]]}" for k, v in list(groups.items())[:SHOW]
    )
    more = f" (and {len(groups) - SHOW} more ids)" if len(groups) > SHOW else ""
    raise DataValidationError(
        f"{source}: column '{column}' (columns.transaction_id): expected unique ids, "
        f"found {len(groups)} duplicated id(s): {shown}{more}"
    )
