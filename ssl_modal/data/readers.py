"""Shared readers for tabular and JSON data with messages that name the file and the place.

`read_table(path)` reads CSV/TSV (optionally .gz), Parquet, JSONL and JSON (an array of
records) into a pandas DataFrame. Every failure raises `DataValidationError` (a ValueError)
naming the file and, where there is one, the line and byte offset; a missing file raises
`DataFileNotFoundError`, which is both a DataValidationError and a FileNotFoundError.

Row convention used throughout ssl_modal.data: row 1 is the first data record (the CSV
header is not counted; blank lines, and CSV rows whose fields are all empty, are skipped);
`line` is the physical line in the file, counting the newlines inside quoted fields.
"""

from __future__ import annotations

import difflib
import gzip
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("ssl_modal")
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_TEXT_FORMATS = {"csv", "tsv", "jsonl", "json"}


class DataValidationError(ValueError):
    """Data that does not match what the code or a schema expects. `.report` is set by validate()."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class DataFileNotFoundError(DataValidationError, FileNotFoundError):
    """The data file does not exist."""


def detect_format(path: str | Path) -> tuple[str, bool]:
    """(format, gzipped) from the file name; unknown extensions raise with the supported list."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    fmt = FORMATS.get(ext)
    if fmt is None or (gz and fmt == "parquet"):
        known = ", ".join(sorted(FORMATS)) + " (text formats may end in .gz)"
        raise DataValidationError(f"{path}: unknown file extension '{''.join(path.suffixes)}'; supported: {known}")
    return fmt, gz


def _open_bytes(path: Path, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb")


def check_utf8(path: str | Path, chunk_size: int = 1 << 24) -> None:
    """Raise DataValidationError naming line and byte offset of the first invalid UTF-8 byte."""
    path = Path(path)
    gz = path.suffix.lower() == ".gz"
    offset, line, line_start, carry = 0, 1, 0, b""
    with _open_bytes(path, gz) as f:
        while True:
            block = f.read(chunk_size)
            data = carry + block
            if not data:
                return
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as exc:
                # A multi-byte character cut by the chunk boundary continues in the next block.
                truncated = exc.reason == "unexpected end of data" and len(data) - exc.start < 4
                if not (truncated and block):
                    newline = data.rfind(b"\n", 0, exc.start)
                    start = offset + newline + 1 if newline >= 0 else line_start
                    bad_line = line + data.count(b"\n", 0, exc.start)
                    raise DataValidationError(
                        f"{path}: not valid UTF-8 at line {bad_line}, column {offset + exc.start - start + 1}, "
                        f"byte offset {offset + exc.start} (byte 0x{data[exc.start]:02x}); re-save the "
                        f"file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed_{path.name}`"
                    ) from None
                good = exc.start
            line += data.count(b"\n", 0, good)
            newline = data.rfind(b"\n", 0, good)
            line_start = offset + newline + 1 if newline >= 0 else line_start
            offset += good
            carry = data[good:]


def check_file(path: str | Path) -> tuple[Path, str, bool]:
    """Existence, extension, non-emptiness and (for text formats) UTF-8; returns (path, format, gz)."""
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found (working directory {Path.cwd()})")
    if path.is_dir():
        raise DataValidationError(f"{path}: is a directory, expected a data file")
    fmt, gz = detect_format(path)
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: file is empty (0 bytes)")
    if fmt in _TEXT_FORMATS:
        check_utf8(path)
        with _open_bytes(path, gz) as f:
            while (block := f.read(1 << 20)) and not block.strip():
                pass
            if not block:
                raise DataValidationError(f"{path}: file is empty (only whitespace)")
    return path, fmt, gz


def missing_columns_message(path, missing: Sequence[str], found: Sequence[str]) -> str:
    """'data.csv: missing column 'amount' (found: ...); did you mean 'amnt'?'"""
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, [str(f) for f in found], n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        parts.append(f"missing column '{name}'{hint}")
    return f"{path}: " + ", ".join(parts) + f" (found columns: {', '.join(map(str, found)) or 'none'})"


def read_jsonl_records(path: str | Path, gz: bool = False) -> tuple[list, np.ndarray, list[tuple[int, str]]]:
    """Parse a JSON Lines file: (records, their 1-based line numbers, [(line, error), ...])."""
    records, lines, errors = [], [], []
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                records.append(json.loads(text.rstrip("\r\n")))
                lines.append(number)
            except json.JSONDecodeError as exc:
                errors.append((number, f"invalid JSON at column {exc.pos + 1}: {exc.msg}"))
    return records, np.asarray(lines, dtype=np.int64), errors


def read_json_document(path: str | Path, gz: bool = False):
    """Parse a whole JSON file; syntax errors name line and column."""
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise DataValidationError(
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None


def _csv_frame(path: Path, sep: str, as_text: bool) -> tuple[pd.DataFrame, np.ndarray, list]:
    """Read a CSV; returns (frame, physical line of each row, [(line, message)] for malformed lines)."""
    kwargs = dict(dtype=str, na_filter=False) if as_text else dict(keep_default_na=False, na_values=[""])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            df = pd.read_csv(path, sep=sep, skip_blank_lines=False, on_bad_lines="warn", encoding="utf-8", **kwargs)
        except pd.errors.EmptyDataError:
            raise DataValidationError(f"{path}: file is empty (no header line)") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataValidationError(f"{path}: could not parse as {sep!r}-separated text: {exc}") from None
    if not df.index.equals(pd.RangeIndex(len(df))):  # pandas took the extra leading fields as an index
        raise DataValidationError(
            f"{path}: line 2 has more fields than the header line ({len(df.columns)} columns: "
            f"{', '.join(map(str, df.columns))}); add the missing column names to the header"
        )
    # Physical lines: each row adds 1 + the newlines inside its quoted fields.
    text_cols = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
    embedded = np.zeros(len(df), dtype=np.int64)
    for c in text_cols:
        embedded += df[c].str.count("\n").fillna(0).to_numpy(dtype=np.int64)
    header_lines = 1 + sum(str(c).count("\n") for c in df.columns)
    # pandas numbers a skipped line by record (header = record 1, blank lines counted).
    cum = np.cumsum(embedded)
    skipped: list[tuple[int, str]] = []
    messages = [str(w.message) for w in caught if issubclass(w.category, pd.errors.ParserWarning)]
    for part in "\n".join(messages).splitlines():
        if part.startswith("Skipping line "):
            record, _, reason = part[len("Skipping line ") :].partition(": ")
            kept_before = min(max(int(record) - 2 - len(skipped), 0), len(df))
            line = header_lines + int(record) - 1 + (int(cum[kept_before - 1]) if kept_before else 0)
            skipped.append((line, f"malformed CSV line: {reason.strip()}"))
    lines = header_lines + 1 + np.arange(len(df), dtype=np.int64) + (cum - embedded)
    for line, _ in skipped:  # ascending; each skipped line pushes later rows down by one
        lines[lines >= line] += 1
    # Blank lines read as all-empty rows: drop them, keep the physical line numbers of the rest.
    if len(df.columns) and len(df):
        blank = (df.isna() | df.eq("")).all(axis=1).to_numpy()
        df, lines = df[~blank].reset_index(drop=True), lines[~blank]
    return df, lines, skipped


def csv_separator(path: Path, gz: bool, default: str) -> str:
    """`default`, or ';' / tab when the header line has those but no `default` (bank exports: 'date;amount')."""
    with _open_bytes(path, gz) as f:
        header = f.readline(1 << 16).decode("utf-8", errors="replace")
    for sep in (";", "\t", ","):
        if sep != default and sep in header and default not in header:
            log.info("%s: the header line is %r-separated; reading it with that separator", path, sep)
            return sep
    return default


def read_frame(path: str | Path, *, as_text: bool = False) -> tuple[pd.DataFrame, np.ndarray | None, list, str]:
    """The reader behind read_table and validate: (frame, line per row or None, parse problems, format).

    Parse problems are (line, message) pairs for malformed CSV/JSONL lines that were skipped.
    `as_text=True` keeps CSV fields as strings ("" for empty) so validation sees what the user wrote.
    """
    path, fmt, gz = check_file(path)
    lines: np.ndarray | None
    if fmt in ("csv", "tsv"):
        df, lines, problems = _csv_frame(path, csv_separator(path, gz, "," if fmt == "csv" else "\t"), as_text)
        return df, lines, problems, fmt
    if fmt == "parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt / non-Parquet files
            raise DataValidationError(f"{path}: could not read as Parquet: {exc}") from None
        return df, None, [], fmt
    if fmt == "jsonl":
        records, lines, problems = read_jsonl_records(path, gz)
    else:
        records = read_json_document(path, gz)
        if not isinstance(records, list):
            raise DataValidationError(
                f"{path}: expected a JSON array of records for a table, found a JSON {type(records).__name__}"
            )
        lines = None
    not_objects = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if not_objects:
        i = not_objects[0]
        where = f"line {lines[i]}" if lines is not None else f"element {i}"
        raise DataValidationError(
            f"{path}: {where}: expected a JSON object per record, "
            f"found {type(records[i]).__name__} ({len(not_objects)} such records)"
        )
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return df, lines, problems if fmt == "jsonl" else [], fmt


def read_table(
    path: str | Path, *, columns: Sequence[str] | None = None, allow_empty: bool = False, as_text: bool = False
) -> pd.DataFrame:
    """Read CSV/TSV/Parquet/JSONL/JSON into a DataFrame with clear errors.

    columns: required columns (missing ones raise, naming the columns found and the closest match);
    only these are returned. allow_empty: accept a file with a header but no rows.
    as_text: CSV/TSV fields stay strings. Malformed CSV/JSONL lines raise with their line numbers.
    Only empty fields are missing values in CSV ("NA" or "None" stay text).
    """
    df, _, problems, _ = read_frame(path, as_text=as_text)
    if problems:
        shown = "; ".join(f"line {line}: {msg}" for line, msg in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataValidationError(f"{path}: {len(problems)} malformed line(s): {shown}{more}")
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataValidationError(missing_columns_message(path, missing, list(df.columns)))
        df = df[list(columns)]
    if len(df) == 0 and not allow_empty:
        raise DataValidationError(
            f"{path}: no data rows (only a header: {', '.join(map(str, df.columns))})"
            if len(df.columns)
            else f"{path}: no data rows"
        )
    return df
