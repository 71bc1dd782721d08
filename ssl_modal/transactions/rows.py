"""Raw rows -> encoded event fields for incremental scoring (no windows, no Arrow, no per-call refitting).

`RowEncoder(preprocessor)` keeps the fitted vocabularies as dicts and the amount bin edges and scalers as
arrays, and encodes a table as `TransactionPreprocessor.transform` does (same ids, amount bins, calendar values
and standardised numbers; tests/transactions/test_incremental.py compares them), grouped by client and sorted
by time within a client (ties keep the input order). Typed columns (numbers, datetimes, text, categories) are
read with numpy; what needs real parsing (text times, formatted amounts) and every invalid value go through
the table parser (`parsing.py`), so formats and error messages are those of `features`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssl_modal.data.readers import DataValidationError
from ssl_modal.transactions.parsing import factorize_text, parse_amount, parse_time, transaction_ids
from ssl_modal.transactions.preprocess import CALENDAR, UNK, _signed_log1p, calendar_values

log = logging.getLogger("ssl_modal")


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


def _is_number(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _is_text(dtype) -> bool:
    return (isinstance(dtype, np.dtype) and dtype.kind == "O") or pd.api.types.is_string_dtype(dtype)


def _values(s: pd.Series):
    return s.to_numpy() if isinstance(s.dtype, np.dtype) else s.array


def text_values(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(text per row, missing per row) as `factorize_text` + `as_text` give them: integral float columns lose
    '.0', empty or whitespace-only text is missing."""
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
        text = np.array([str(x) for x in v], dtype=object)
        if _is_text(dtype):
            miss |= np.array([isinstance(x, str) and not x.strip() for x in v], dtype=bool)
        return text, miss
    codes, uniques = factorize_text(s)  # any other dtype (datetimes as ids ...): the table parser
    return np.append(uniques, "").astype(object)[codes], codes < 0


class RowEncoder:
    """Encodes raw tables with a fitted `TransactionPreprocessor`'s state (see the module docstring)."""

    def __init__(self, preprocessor):
        st = preprocessor.state_dict()
        self.columns, self.fields = preprocessor.config.columns, preprocessor.fields
        self.vocab = {name: {v: i + 3 for i, v in enumerate(words)} for name, words in st["vocabularies"].items()}
        self.edges = np.asarray(st["amount_edges"], np.float64)
        self.stats, self.calendar, self.time_kind = st["numeric_stats"], list(st["calendar"]), st["time_kind"]
        self.to_hours = 24.0 if self.time_kind == "days" else 1 / 3600.0

    def _times(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        cols, fmt = self.columns.time_columns, self.columns.time_format
        s = frame[cols[0]]
        kind = None
        if len(cols) == 1 and fmt in ("days", "seconds") and _is_number(s.dtype):
            values, kind = s.to_numpy(np.float64, na_value=np.nan), fmt
        elif len(cols) == 1 and fmt not in ("days", "seconds") and pd.api.types.is_datetime64_any_dtype(s.dtype):
            t = s.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(s.dtype, "tz", None) else s
            ns = t.to_numpy(dtype="datetime64[ns]")
            values, kind = ns.astype(np.int64) / 1e9, "seconds"
            values[np.isnat(ns)] = np.nan
        if kind is None or not np.isfinite(values).all():  # text, or values the parser must name
            values, kind = parse_time(frame, cols, fmt, source)
        if kind != self.time_kind:
            raise DataValidationError(
                f"{source}: event times are {kind} but the preprocessor was fitted on {self.time_kind}"
            )
        return values

    @staticmethod
    def _numbers(s: pd.Series, fmt, column: str, source: str, role: str) -> np.ndarray:
        if _is_number(s.dtype):
            v = s.to_numpy(np.float64, na_value=np.nan)
            if not (np.isinf(v).any() or (role == "amount" and np.isnan(v).any())):
                return v
        return parse_amount(s, fmt, column, source, role=role, allow_missing=role != "amount")

    def _ids(self, frame: pd.DataFrame, source: str, keys: dict) -> np.ndarray | None:
        column = self.columns.transaction_id
        if column is None:
            return None
        s = frame[column]
        keys[column] = _values(s)
        text, miss = text_values(s)
        if miss.any() or len(set(text)) != len(text):
            transaction_ids(frame, column, source)  # raises naming the rows and ids
            raise DataValidationError(f"{source}: column '{column}' (columns.transaction_id): ids are not unique")
        return text

    def encode(self, frame: pd.DataFrame, source: str = "table") -> EncodedRows:
        cols = self.columns
        self.columns.check(frame, source)
        if len(frame) == 0:
            raise DataValidationError(f"{source}: empty table (0 rows); expected at least one transaction")
        report = {"source": source, "rows_in": len(frame), "rows_dropped": {}, "missing_values": {}}
        report["unseen_values"] = {}
        s = frame[cols.client_id]
        keys = {cols.client_id: _values(s)}
        clients, no_client = text_values(s)
        times = self._times(frame, source)
        a = _signed_log1p(self._numbers(frame[cols.amount], cols.amount_format, cols.amount, source, "amount"))
        tx = self._ids(frame, source, keys)
        cat = {}
        for name, column in [("mcc", cols.mcc)] + [(c, c) for c in cols.categorical]:
            text, miss = text_values(frame[column])
            vocab = self.vocab[name]
            ids = np.array([vocab.get(t, UNK) for t in text], dtype=np.int64)
            ids[miss] = UNK
            report["missing_values"][name] = int(miss.sum())
            report["unseen_values"][name] = int((ids[~miss] == UNK).sum())
            cat[name] = ids
        cat["amount_bin"] = 3 + np.searchsorted(self.edges, a, side="right")
        for c in self.calendar:
            cat[c] = 3 + calendar_values(times, c, self.time_kind).astype(np.int64) - CALENDAR[c][0]
        num = {"amount": a.astype(np.float32)}
        for c in cols.numeric:
            v = self._numbers(frame[c], None, c, source, "numeric")
            mean, std = self.stats[c]
            miss = ~np.isfinite(v)
            report["missing_values"][c] = int(miss.sum())
            num[c] = np.where(miss, 0.0, (v - mean) / std).astype(np.float32)

        keep = np.flatnonzero(~no_client)
        report["rows_dropped"]["missing_client_id"] = int(no_client.sum())
        if len(keep) == 0:
            raise DataValidationError(f"{source}: no row has a client id (column '{cols.client_id}')")
        groups: dict[str, int] = {}
        code = np.array([groups.setdefault(k, len(groups)) for k in clients[keep]], dtype=np.int64)
        order = np.lexsort((times[keep], code))  # stable: ties keep the input order
        index, code = keep[order], code[order]
        same = np.concatenate([[False], code[1:] == code[:-1]])
        report["timestamps_resorted"] = int((same[1:] & (index[1:] < index[:-1])).sum())
        starts = np.append(np.flatnonzero(~same), len(index))
        for name in ("missing_values", "unseen_values"):
            hits = {k: v for k, v in report[name].items() if v}
            if hits:
                log.warning("score %s: %s mapped to UNK/0: %s", source, name.replace("_", " "), hits)
        if report["rows_dropped"]["missing_client_id"]:
            log.warning("score %s: dropped rows %s", source, report["rows_dropped"])
        return EncodedRows(
            rows_in=len(frame),
            index=index,
            clients=list(groups),
            starts=starts,
            times=times[index],
            cat={n: cat[n][index] for n, f in self.fields.items() if f["kind"] == "categorical"},
            num={n: num[n][index] for n in self.fields if n in num},
            tx=None if tx is None else tx[index],
            report=report,
            keys=keys,
        )
