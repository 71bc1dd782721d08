"""Raw rows -> encoded event fields for incremental scoring (no windows, no Arrow, no per-call refitting).

`RowEncoder(preprocessor)` keeps the fitted vocabularies as dicts and the amount bin edges and scalers as
arrays, and encodes a table as `TransactionPreprocessor.transform` does (same ids, amount bins, calendar values
and standardised numbers; tests/transactions/test_incremental.py compares them), grouped by client and sorted
by time within a client (ties keep the input order). The table is a DataFrame or records (a dict per row, as
from JSON: one code path after reading a column). Typed columns (numbers, datetimes, text, categories) and
ISO-8601 time strings are read with numpy; what needs real parsing (other time formats, formatted amounts)
and every invalid value go through the table parser (`parsing.py`), so formats and error messages are those
of `features`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ssl_modal.data.readers import DataValidationError
from ssl_modal.transactions.parsing import factorize_text, hours_per_unit, parse_amount, parse_time, transaction_ids
from ssl_modal.transactions.preprocess import CALENDAR, UNK, _signed_log1p, calendar_values

log = logging.getLogger("ssl_modal")
# ISO-8601 date-times (what `pd.to_datetime` infers the same way): read with datetime.fromisoformat
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?")
_ISO_FORMATS = (None, "ISO8601", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


@dataclass
class EncodedRows:
    """Events grouped by client (group c is rows starts[c]:starts[c+1]), time-sorted within a client."""

    rows_in: int
    index: np.ndarray  # (N,) input row of each event
    clients: list[str]  # (C,) client ids as text (the state's keys)
    starts: np.ndarray  # (C + 1,)
    times: np.ndarray  # (N,) float64, seconds or days (time_kind)
    cat: dict[str, np.ndarray]  # field -> (N,) int64 ids
    num: dict[str, np.ndarray]  # field -> (N,) float32 (every numeric field but time_gap)
    tx: np.ndarray | None  # (N,) transaction ids as text, None when no id column is mapped
    report: dict
    keys: dict  # input column -> its values (numpy or pandas array, input dtype and order): id and client

    def take(self, clients: np.ndarray) -> tuple[np.ndarray, EncodedRows]:
        """(positions of their events here, the rows of these clients (indices) alone; no keys, no report)."""
        lengths = np.diff(self.starts)[clients]
        ends = np.cumsum(lengths)
        pos = np.repeat(self.starts[clients] - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)
        part = EncodedRows(
            rows_in=len(pos),
            index=self.index[pos],
            clients=[self.clients[c] for c in clients.tolist()],
            starts=np.concatenate([[0], ends]),
            times=self.times[pos],
            cat={k: v[pos] for k, v in self.cat.items()},
            num={k: v[pos] for k, v in self.num.items()},
            tx=None if self.tx is None else self.tx[pos],
            report={},
            keys={},
        )
        return pos, part


def _is_number(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _is_text(dtype) -> bool:
    return (isinstance(dtype, np.dtype) and dtype.kind == "O") or pd.api.types.is_string_dtype(dtype)


def _values(s: pd.Series):
    return s.to_numpy() if isinstance(s.dtype, np.dtype) else s.array


def _missing_value(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()) or v is pd.NA


def text_values(s) -> tuple[np.ndarray, np.ndarray]:
    """(text per row, missing per row) as `factorize_text` + `as_text` give them: integral float columns lose
    '.0', empty or whitespace-only text is missing. `s`: a Series, or a record column (object array)."""
    if isinstance(s, np.ndarray):  # records: Python values; floats only -> the float column rule
        if all(isinstance(v, float) or v is None for v in s):
            s = pd.Series(np.array([np.nan if v is None else v for v in s], np.float64))
        else:
            miss = np.array([_missing_value(v) for v in s], bool)
            return np.array(["" if m else str(v) for v, m in zip(s, miss, strict=True)], object), miss
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        codes = s.array.codes  # (the .cat accessor costs 0.2 ms a call)
        names = np.array([str(v) for v in s.array.categories] + [""], dtype=object)
        return names[codes], codes < 0
    if pd.api.types.is_float_dtype(dtype) and isinstance(dtype, np.dtype):
        v = s.to_numpy()
        miss = np.isnan(v)
        ok = v[~miss]
        integral = bool(np.all(np.isfinite(ok)) and np.all(np.mod(ok, 1) == 0))
        text = ["" if m else str(int(x)) if integral else str(x) for x, m in zip(v, miss, strict=True)]
        return np.array(text, object), miss
    if (isinstance(dtype, np.dtype) and dtype.kind in "iub") or _is_text(dtype):
        v = s.to_numpy(dtype=object)
        miss = pd.isna(v)
        if isinstance(dtype, pd.StringDtype):  # already text: no str() per value
            miss |= np.array([m or not x.strip() for x, m in zip(v, miss, strict=True)], dtype=bool)
            return (np.where(miss, "", v).astype(object) if miss.any() else v), miss
        if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(v) > 64:  # str() once per distinct value
            uniq, inverse = np.unique(s.to_numpy(), return_inverse=True)
            return np.array([str(x) for x in uniq.tolist()], dtype=object)[inverse], miss
        text = np.array([str(x) for x in v], dtype=object)
        if _is_text(dtype):
            miss |= np.array([isinstance(x, str) and not x.strip() for x in v], dtype=bool)
        return text, miss
    codes, uniques = factorize_text(s)  # any other dtype (datetimes as ids ...): the table parser
    return np.append(uniques, "").astype(object)[codes], codes < 0


class _Table:
    """A DataFrame's or records' columns; records read as object arrays, and as a DataFrame (built on first
    use) where the table parser reads them."""

    def __init__(self, table):
        if isinstance(table, pd.DataFrame):
            self._frame, self.records, self.columns = table, None, table.columns
        else:
            self._frame, self.records = None, table
            names = {}
            for r in table:
                if not isinstance(r, dict):
                    raise DataValidationError(f"records: expected a dict per row, found {type(r).__name__}")
                names.update(dict.fromkeys(r))
            self.columns = list(names)
        self.n = len(table)

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame.from_records(self.records, columns=self.columns)
        return self._frame

    def __getitem__(self, name: str):
        if self.records is None:
            return self._frame[name]
        return np.array([r.get(name) for r in self.records] + [None], dtype=object)[:-1]  # no nested arrays


def _record_times(values: np.ndarray, fmt) -> np.ndarray | None:
    """Epoch seconds of ISO-8601 text / datetime values (naive = UTC, as `parse_time`), None for anything else."""
    if fmt not in _ISO_FORMATS:
        return None
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if isinstance(v, str) and _ISO.fullmatch(v.strip()):
            v = dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        if not isinstance(v, dt.datetime):
            return None
        out[i] = (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
    return out


class RowEncoder:
    """Encodes raw tables with a fitted `TransactionPreprocessor`'s state (see the module docstring)."""

    def __init__(self, preprocessor):
        st = preprocessor.state_dict()
        self.columns, self.fields = preprocessor.config.columns, preprocessor.fields
        self.vocab = {name: {v: i + 3 for i, v in enumerate(words)} for name, words in st["vocabularies"].items()}
        self.edges = np.asarray(st["amount_edges"], np.float64)
        self.stats, self.calendar, self.time_kind = st["numeric_stats"], list(st["calendar"]), st["time_kind"]
        self.to_hours = hours_per_unit(self.time_kind)

    def hours(self, times: np.ndarray) -> np.ndarray:
        """Times in hours, computed as `features` does for `anomaly_score_24h`."""
        return times * self.to_hours

    def _times(self, table: _Table, source: str) -> np.ndarray:
        cols, fmt = self.columns.time_columns, self.columns.time_format
        s = table[cols[0]]
        values = kind = None
        if len(cols) == 1 and isinstance(s, np.ndarray):  # records
            if fmt in ("days", "seconds") and all(type(v) in (int, float) for v in s):
                values, kind = s.astype(np.float64), fmt
            elif fmt not in ("days", "seconds"):
                values, kind = _record_times(s, fmt), "seconds"
        elif len(cols) == 1 and fmt in ("days", "seconds") and _is_number(s.dtype):
            values, kind = s.to_numpy(np.float64, na_value=np.nan), fmt
        elif len(cols) == 1 and fmt not in ("days", "seconds") and pd.api.types.is_datetime64_any_dtype(s.dtype):
            t = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dtype, "tz", None) else s
            ns = t.to_numpy(dtype="datetime64[ns]")
            values, kind = ns.astype(np.int64) / 1e9, "seconds"
            values[np.isnat(ns)] = np.nan
        if values is None or not np.isfinite(values).all():  # text, or values the parser must name
            values, kind = parse_time(table.frame, cols, fmt, source)
        if kind != self.time_kind:
            raise DataValidationError(
                f"{source}: event times are {kind} but the preprocessor was fitted on {self.time_kind}"
            )
        return values

    @staticmethod
    def _numbers(table: _Table, column: str, fmt, source: str, role: str) -> np.ndarray:
        s = table[column]
        if isinstance(s, np.ndarray):  # records: numbers (or None) read directly
            if all(type(v) in (int, float) or (v is None and role != "amount") for v in s):
                v = np.array([np.nan if x is None else x for x in s], np.float64)
                if not np.isinf(v).any() and not (role == "amount" and np.isnan(v).any()):
                    return v
            s = table.frame[column]
        elif _is_number(s.dtype):
            v = s.to_numpy(np.float64, na_value=np.nan)
            if not (np.isinf(v).any() or (role == "amount" and np.isnan(v).any())):
                return v
        return parse_amount(s, fmt, column, source, role=role, allow_missing=role != "amount")

    def _ids(self, table: _Table, source: str, keys: dict) -> np.ndarray | None:
        column = self.columns.transaction_id
        if column is None:
            return None
        s = table[column]
        keys[column] = s if isinstance(s, np.ndarray) else _values(s)
        text, miss = text_values(s)
        if miss.any() or len(set(text)) != len(text):
            transaction_ids(table.frame, column, source)  # raises naming the rows and ids
            raise DataValidationError(f"{source}: column '{column}' (columns.transaction_id): ids are not unique")
        return text

    def _category(self, s, name: str, report: dict) -> np.ndarray:
        """Vocabulary ids (UNK for missing and unseen values); a categorical column with fewer categories than
        rows is looked up once per category."""
        vocab = self.vocab[name]
        if not isinstance(s, np.ndarray) and isinstance(s.dtype, pd.CategoricalDtype):
            codes = s.array.codes
            if len(s.array.categories) <= len(codes):
                table = np.array([vocab.get(str(v), UNK) for v in s.array.categories] + [UNK], np.int64)
                ids, miss = table[codes], codes < 0
                report["missing_values"][name] = int(miss.sum())
                report["unseen_values"][name] = int((ids[~miss] == UNK).sum())
                return ids
        text, miss = text_values(s)
        ids = np.array([vocab.get(t, UNK) for t in text], dtype=np.int64)
        ids[miss] = UNK
        report["missing_values"][name] = int(miss.sum())
        report["unseen_values"][name] = int((ids[~miss] == UNK).sum())
        return ids

    def encode(self, table, source: str = "table") -> EncodedRows:
        """`table`: a DataFrame, or records (a list of dicts, one per row; a missing key is a missing value)."""
        cols, table = self.columns, _Table(table)
        self.columns.check(SimpleNamespace(columns=table.columns), source)
        if table.n == 0:
            raise DataValidationError(f"{source}: empty table (0 rows); expected at least one transaction")
        report = {"source": source, "rows_in": table.n, "rows_dropped": {}, "missing_values": {}}
        report["unseen_values"] = {}
        s = table[cols.client_id]
        keys = {cols.client_id: s if isinstance(s, np.ndarray) else _values(s)}
        clients, no_client = text_values(s)
        times = self._times(table, source)
        a = _signed_log1p(self._numbers(table, cols.amount, cols.amount_format, source, "amount"))
        tx = self._ids(table, source, keys)
        cat = {
            name: self._category(table[c], name, report)
            for name, c in [("mcc", cols.mcc)] + [(c, c) for c in cols.categorical]
        }
        cat["amount_bin"] = 3 + np.searchsorted(self.edges, a, side="right")
        for c in self.calendar:
            cat[c] = 3 + calendar_values(times, c, self.time_kind).astype(np.int64) - CALENDAR[c][0]
        num = {"amount": a.astype(np.float32)}
        for c in cols.numeric:
            v = self._numbers(table, c, None, source, "numeric")
            mean, std = self.stats[c]
            miss = ~np.isfinite(v)
            report["missing_values"][c] = int(miss.sum())
            num[c] = np.where(miss, 0.0, (v - mean) / std).astype(np.float32)
        return self._group(table.n, clients, no_client, times, cat, num, tx, report, keys, source)

    def _group(self, n, clients, no_client, times, cat, num, tx, report, keys, source) -> EncodedRows:
        cols = self.columns
        keep = np.flatnonzero(~no_client)
        report["rows_dropped"]["missing_client_id"] = int(no_client.sum())
        if len(keep) == 0:
            raise DataValidationError(f"{source}: no row has a client id (column '{cols.client_id}')")
        if len(keep) == 1:
            index, starts, names = keep, np.array([0, 1]), [clients[keep[0]]]
            report["timestamps_resorted"] = 0
        else:
            code, groups = pd.factorize(clients[keep])  # groups in order of first appearance
            order = np.lexsort((times[keep], code))  # stable: ties keep the input order
            index, code = keep[order], code[order]
            same = np.concatenate([[False], code[1:] == code[:-1]])
            report["timestamps_resorted"] = int((same[1:] & (index[1:] < index[:-1])).sum())
            starts, names = np.append(np.flatnonzero(~same), len(index)), groups.tolist()
        for name in ("missing_values", "unseen_values"):
            hits = {k: v for k, v in report[name].items() if v}
            if hits:
                log.warning("score %s: %s mapped to UNK/0: %s", source, name.replace("_", " "), hits)
        if report["rows_dropped"]["missing_client_id"]:
            log.warning("score %s: dropped rows %s", source, report["rows_dropped"])
        return EncodedRows(
            rows_in=n,
            index=index,
            clients=names,
            starts=starts,
            times=times[index],
            cat={n: cat[n][index] for n, f in self.fields.items() if f["kind"] == "categorical"},
            num={n: num[n][index] for n in self.fields if n in num},
            tx=None if tx is None else tx[index],
            report=report,
            keys=keys,
        )
