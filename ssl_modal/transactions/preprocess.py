"""`TransactionPreprocessor`: raw transactions table -> per-client windows of encoded fields (Arrow lists).

Vectorised end to end (pandas factorize, numpy sort/gather, pyarrow ListArray.from_arrays): one Python
call per distinct categorical value at most, never per row. Fitted state (vocabularies, amount bin edges,
numeric standardisation) is plain JSON via `state_dict()` and travels inside the model checkpoint.

Fields: categorical "mcc", "amount_bin", calendar ("hour", "weekday", "day_of_month", "month"), extra
categorical columns; numeric "amount" (signed log1p), "time_gap" (log1p hours since the client's previous
event, 0 for the first), extra numeric columns (standardised, missing -> 0 and counted). Ids 0/1/2 of every
categorical field are PAD/MASK/UNK; missing and unseen values map to UNK and are counted in the report.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ssl_modal.core.ranges import at_least, check_fields
from ssl_modal.data.readers import DataValidationError, read_table
from ssl_modal.transactions.mapping import ColumnMapping, field_names
from ssl_modal.transactions.parsing import factorize_text, hours_per_unit, parse_amount, parse_time, transaction_ids
from ssl_modal.transactions.sequences import SequenceSet, build_windows

log = logging.getLogger("ssl_modal")
PAD, MASK, UNK = 0, 1, 2
RESERVED = ["<pad>", "<mask>", "<unk>"]
CALENDAR = {"hour": (0, 24), "weekday": (0, 7), "day_of_month": (1, 32), "month": (1, 13)}  # [lo, hi)
STATE_FORMAT = "ssl_modal.transactions.preprocess/1"


@dataclass
class PreprocessConfig:
    columns: ColumnMapping
    min_frequency: int = at_least(1, 1)  # rarer categorical values (in the fitting table) -> UNK
    amount_bins: int = at_least(1, 32)  # quantile bins of the signed-log1p amount
    max_length: int = at_least(1, 256)  # window length in events
    window_stride: int | None = at_least(1, None)  # default: max_length (non-overlapping windows)
    calendar: list[str] = field(default_factory=lambda: ["hour", "weekday", "day_of_month"])
    min_events: int = at_least(1, 1)  # clients with fewer events are dropped (and counted)

    def __post_init__(self):
        if isinstance(self.columns, dict):
            self.columns = ColumnMapping(**self.columns)
        self.calendar = list(self.calendar)
        unknown = [c for c in self.calendar if c not in CALENDAR]
        if unknown:
            raise ValueError(f"preprocess.calendar: unknown field(s) {unknown}; expected some of {list(CALENDAR)}")
        check_fields(self, "preprocess")
        if self.window_stride is not None and self.window_stride > self.max_length:
            raise ValueError(
                f"preprocess.window_stride: expected 1..max_length ({self.max_length}), found {self.window_stride}"
            )

    @property
    def stride(self) -> int:
        return int(self.window_stride or self.max_length)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def vocabulary_from_counts(text: np.ndarray, counts: np.ndarray, min_frequency: int) -> list[str]:
    """Vocabulary (most frequent first, ties by text) from distinct values as text and their counts;
    equal texts are merged. One function for the pandas and the Spark engine."""
    s = pd.Series(np.asarray(counts, np.int64), index=pd.Index(text, dtype=object)).groupby(level=0).sum()
    s = s[s >= min_frequency].sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    return [str(v) for v in s.index]


def amount_edges(n: int, bins: int, order_stat) -> np.ndarray:
    """Quantile bin edges of the signed-log1p amount, numpy's "linear" quantile rule (equal to
    `np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1])`), from `order_stat(ranks)`: the raw amounts at
    these 0-based ranks of the sorted amounts. The Spark engine answers `order_stat` from a distributed
    value histogram, so both engines give the same edges bit for bit."""
    if bins <= 1 or n == 0:
        return np.zeros(0, np.float64)
    virtual = (n - 1) * np.linspace(0, 1, bins + 1)[1:-1]
    lo = np.floor(virtual).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    gamma = virtual - lo
    ranks = np.unique(np.concatenate([lo, hi]))
    values = _signed_log1p(np.asarray(order_stat(ranks), np.float64))  # monotone: f(sorted x) = sorted f(x)
    at = dict(zip(ranks.tolist(), values, strict=True))
    a, b = np.array([at[r] for r in lo]), np.array([at[r] for r in hi])
    diff = b - a
    q = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)  # numpy's _lerp
    return np.unique(q)


def exact_sum(v: np.ndarray) -> Fraction:
    """The exact sum of finite float64 values (integer arithmetic on mantissas): independent of the order
    and of how the values are split into parts, so per-partition sums add up to the same number."""
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v) & (v != 0)]
    if len(v) == 0:
        return Fraction(0)
    m, e = np.frexp(v)
    mi = (m * 2.0**53).astype(np.int64)  # v = mi * 2**(e - 53), exactly
    order = np.argsort(e, kind="stable")
    e, mi = e[order], mi[order]
    starts = np.flatnonzero(np.r_[True, e[1:] != e[:-1]])
    hi = np.add.reduceat(mi >> 26, starts)  # < 2**27 each: no int64 overflow below 2**36 values
    lo = np.add.reduceat(mi & (2**26 - 1), starts)
    base = int(e[0]) - 53
    total = sum(
        (int(h) * 2**26 + int(low)) << (int(x) - 53 - base) for h, low, x in zip(hi, lo, e[starts], strict=True)
    )
    return Fraction(total) * Fraction(2) ** base


def numeric_stats(v: np.ndarray, sums: tuple | None = None) -> list[float]:
    """[mean, std] over the finite values (std 0 -> 1), from exact sums; `sums` = (count, exact_sum(v),
    exact sum of squared deviations) when computed elsewhere (Spark), else computed from `v`."""
    if sums is None:
        finite = v[np.isfinite(v)]
        count, total = len(finite), exact_sum(finite)
        mean = float(total / count) if count else 0.0
        sq = exact_sum(squared_deviations(finite, mean))
    else:
        count, total, sq = sums
        mean = float(total / count) if count else 0.0
    if not count:
        return [0.0, 1.0]
    std = float(np.sqrt(float(sq / count)))
    return [mean, std if std > 0 else 1.0]


def squared_deviations(v: np.ndarray, mean: float) -> np.ndarray:
    finite = v[np.isfinite(v)]
    return (finite - mean) ** 2


def calendar_values(times: np.ndarray, name: str, kind: str) -> np.ndarray:
    """Calendar value per event (UTC); for day offsets only "weekday" (day index mod 7) exists."""
    days = np.floor(times if kind == "days" else times / 86400.0).astype(np.int64)
    if name == "weekday":
        return (days + (0 if kind == "days" else 3)) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    if name == "hour":
        return np.floor(np.mod(times, 86400.0) / 3600.0).astype(np.int64)
    d = days.astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    if name == "month":
        return m.astype(np.int64) % 12 + 1
    return (d - m.astype("datetime64[D]")).astype(np.int64) + 1  # day_of_month


class TransactionPreprocessor:
    """fit on a training table, transform any table with the same columns (DataFrame or CSV/Parquet path)."""

    def __init__(self, config: PreprocessConfig | dict):
        self.config = config if isinstance(config, PreprocessConfig) else PreprocessConfig(**config)
        self._state: dict | None = None
        field_names(self.config.columns, self.config.calendar)  # name clashes fail early

    # ---------------------------------------------------------------- reading and parsing
    def _read(self, table) -> tuple[pd.DataFrame, str]:
        if isinstance(table, pd.DataFrame):
            frame, source = table, "table"
        elif isinstance(table, (str, Path)):
            frame, source = read_table(table, allow_empty=True), str(table)
        else:
            raise TypeError(f"expected a pandas DataFrame or a CSV/Parquet path, found {type(table).__name__}")
        if len(frame) == 0:
            raise DataValidationError(
                f"{source}: empty table (0 rows; columns: {list(frame.columns)}); expected at least one transaction"
            )
        self.config.columns.check(frame, source)
        return frame, source

    def _parse(self, frame: pd.DataFrame, source: str) -> dict:
        cols = self.config.columns
        p = {"source": source, "rows_in": len(frame)}
        p["client_codes"], p["client_text"] = factorize_text(frame[cols.client_id], sort=True)
        p["time"], p["time_kind"] = parse_time(frame, cols.time_columns, cols.time_format, source)
        p["amount"] = parse_amount(frame[cols.amount], cols.amount_format, cols.amount, source)
        p["tx"] = transaction_ids(frame, cols.transaction_id, source)
        p["cat"] = {"mcc": factorize_text(frame[cols.mcc])}
        p["cat"].update({c: factorize_text(frame[c]) for c in cols.categorical})
        p["num"] = {
            c: parse_amount(frame[c], None, c, source, role="numeric", allow_missing=True) for c in cols.numeric
        }
        return p

    # ---------------------------------------------------------------- fitting
    def _fit_parsed(self, p: dict) -> None:
        cfg = self.config
        vocabs = {
            name: vocabulary_from_counts(text, np.bincount(codes[codes >= 0], minlength=len(text)), cfg.min_frequency)
            for name, (codes, text) in p["cat"].items()
        }
        amount = p["amount"]
        edges = amount_edges(len(amount), cfg.amount_bins, lambda ranks: np.partition(amount, ranks)[ranks])
        stats = {name: numeric_stats(v) for name, v in p["num"].items()}
        self._finish_fit(vocabs, edges, stats, p["time_kind"], bool(np.any(np.mod(p["time"], 86400.0))))

    def _finish_fit(self, vocabs: dict, edges: np.ndarray, stats: dict, time_kind: str, any_time_of_day: bool):
        """The fitted state from the aggregates (shared by this class and the Spark engine)."""
        cfg = self.config
        calendar = [c for c in cfg.calendar if time_kind != "days" or c == "weekday"]
        why = "event times are day offsets"
        if "hour" in calendar and not any_time_of_day:
            calendar.remove("hour")
            why = "every event time is at midnight (dates without a time of day)"
        skipped = [c for c in cfg.calendar if c not in calendar]
        if skipped:
            log.warning("preprocess: calendar field(s) %s skipped: %s", skipped, why)
        self._state = {
            "format": STATE_FORMAT,
            "config": asdict(cfg),
            "vocabularies": vocabs,
            "amount_edges": np.asarray(edges, np.float64).tolist(),
            "numeric_stats": stats,
            "time_kind": time_kind,
            "calendar": calendar,
            "calendar_skipped": skipped,
        }

    def fit(self, table) -> TransactionPreprocessor:
        frame, source = self._read(table)
        self._fit_parsed(self._parse(frame, source))
        return self

    def fit_transform(self, table) -> SequenceSet:
        frame, source = self._read(table)
        parsed = self._parse(frame, source)
        self._fit_parsed(parsed)
        return self._transform_parsed(parsed)

    def transform(self, table) -> SequenceSet:
        self._require_fit()
        frame, source = self._read(table)
        return self._transform_parsed(self._parse(frame, source))

    def _require_fit(self) -> dict:
        if self._state is None:
            raise RuntimeError("TransactionPreprocessor is not fitted: call fit(table) or from_state_dict(state)")
        return self._state

    # ---------------------------------------------------------------- transforming
    def _encode(self, name: str, codes: np.ndarray, text: np.ndarray, report: dict) -> np.ndarray:
        vocab = pd.Index(self._state["vocabularies"][name])
        per_value = vocab.get_indexer(pd.Index(text, dtype=object)) if len(text) else np.zeros(0, np.int64)
        per_value = np.where(per_value >= 0, per_value + 3, UNK).astype(np.int32)
        ids = np.full(len(codes), UNK, dtype=np.int32)
        present = codes >= 0
        ids[present] = per_value[codes[present]]
        report["missing_values"][name] = int((~present).sum())
        report["unseen_values"][name] = int((ids[present] == UNK).sum())
        return ids

    def _transform_parsed(self, p: dict) -> SequenceSet:
        st, cfg = self._state, self.config
        if p["time_kind"] != st["time_kind"]:
            raise DataValidationError(
                f"{p['source']}: event times are {p['time_kind']} but the preprocessor was fitted on {st['time_kind']}"
            )
        report = {
            "source": p["source"],
            "rows_in": p["rows_in"],
            "rows_dropped": {},
            "missing_values": {},
            "unseen_values": {},
            "calendar_skipped": list(st["calendar_skipped"]),
        }
        cat = {name: self._encode(name, codes, text, report) for name, (codes, text) in p["cat"].items()}
        a = _signed_log1p(p["amount"])
        cat["amount_bin"] = (3 + np.searchsorted(st["amount_edges"], a, side="right")).astype(np.int32)
        for c in st["calendar"]:
            lo = CALENDAR[c][0]
            cat[c] = (3 + calendar_values(p["time"], c, st["time_kind"]) - lo).astype(np.int32)
        num = {"amount": a.astype(np.float32)}
        for name, v in p["num"].items():
            mean, std = st["numeric_stats"][name]
            miss = ~np.isfinite(v)
            report["missing_values"][name] = int(miss.sum())
            num[name] = np.where(miss, 0.0, (v - mean) / std).astype(np.float32)

        # clients (codes already in sorted id order): rows without a client id are dropped and counted
        key, ctext = p["client_codes"], p["client_text"]
        keep = key >= 0
        report["rows_dropped"]["missing_client_id"] = int((~keep).sum())
        order = np.flatnonzero(keep)
        order = order[np.lexsort((p["time"][order], key[order]))]  # stable: ties keep input order
        key_s, t_s = key[order], p["time"][order]
        same = np.zeros(len(order), bool)
        same[1:] = key_s[1:] == key_s[:-1]
        report["timestamps_resorted"] = int((same[1:] & (order[1:] < order[:-1])).sum()) if len(order) else 0

        # min_events filter
        first = np.flatnonzero(~same)
        lengths = np.diff(np.append(first, len(order)))
        short = lengths < cfg.min_events
        report["rows_dropped"]["min_events"] = int(lengths[short].sum())
        report["clients_dropped_min_events"] = int(short.sum())
        if short.any():
            row_keep = np.repeat(~short, lengths)
            order, key_s, t_s, same = order[row_keep], key_s[row_keep], t_s[row_keep], same[row_keep]
            first, lengths = np.flatnonzero(~same), lengths[~short]
        if len(order) == 0:
            raise DataValidationError(
                f"{p['source']}: 0 clients left after filtering ({p['rows_in']} rows in; "
                f"dropped: {report['rows_dropped']}); expected at least one client with "
                f">= min_events={cfg.min_events} events"
            )
        gap = np.zeros(len(order), np.float64)
        gap[1:] = np.where(same[1:], t_s[1:] - t_s[:-1], 0.0)
        hours = gap * hours_per_unit(st["time_kind"])
        fields = self.fields
        columns = {
            n: cat[n][order] if f["kind"] == "categorical" else num[n][order]
            for n, f in fields.items()
            if n != "time_gap"
        }
        columns["time_gap"] = np.log1p(hours).astype(np.float32)  # already in sorted order
        columns = {n: columns[n] for n in fields}
        client_of = ctext[key_s[first]].astype(str)
        tx = p["tx"].take(pa.array(order)) if isinstance(p["tx"], (pa.Array, pa.ChunkedArray)) else p["tx"][order]
        seq = build_windows(client_of, lengths, tx, t_s, columns, fields, cfg.max_length, cfg.stride, report)
        report.update(
            rows_out=int(len(order)),
            clients=int(len(lengths)),
            single_event_clients=int((lengths == 1).sum()),
            time_kind=st["time_kind"],
        )
        for name in ("missing_values", "unseen_values"):
            hits = {k: v for k, v in report[name].items() if v}
            if hits:
                log.warning("preprocess %s: %s mapped to UNK/0: %s", p["source"], name.replace("_", " "), hits)
        if report["timestamps_resorted"]:
            log.warning(
                "preprocess %s: %d event(s) were out of time order within their client and were sorted",
                p["source"],
                report["timestamps_resorted"],
            )
        dropped = {k: v for k, v in report["rows_dropped"].items() if v}
        if dropped:
            log.warning("preprocess %s: dropped rows %s", p["source"], dropped)
        return seq

    # ---------------------------------------------------------------- fitted state
    @property
    def fields(self) -> dict[str, dict]:
        st = self._require_fit()
        cat, num = field_names(self.config.columns, st["calendar"])
        out = {}
        for name in cat:
            if name == "amount_bin":
                size = len(st["amount_edges"]) + 1 + 3
            elif name in CALENDAR:
                size = CALENDAR[name][1] - CALENDAR[name][0] + 3
            else:
                size = len(st["vocabularies"][name]) + 3
            out[name] = {"kind": "categorical", "vocab_size": int(size)}
        out.update({name: {"kind": "numeric"} for name in num})
        return out

    def vocabulary(self, field: str) -> list:
        """id -> value: ids 0..2 are "<pad>", "<mask>", "<unk>"; amount bins read "[lo, hi)" in raw units."""
        st = self._require_fit()
        if field in st["vocabularies"]:
            return RESERVED + list(st["vocabularies"][field])
        if field == "amount_bin":
            raw = [float(np.sign(e) * np.expm1(abs(e))) for e in st["amount_edges"]]
            bounds = [-np.inf] + raw + [np.inf]
            return RESERVED + [f"[{lo:.6g}, {hi:.6g})" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        if field in st["calendar"]:
            lo, hi = CALENDAR[field]
            return RESERVED + list(range(lo, hi))
        raise KeyError(
            f"'{field}' is not a categorical field; categorical fields: "
            f"{[n for n, f in self.fields.items() if f['kind'] == 'categorical']}"
        )

    def state_dict(self) -> dict:
        return dict(self._require_fit())

    @classmethod
    def from_state_dict(cls, state: dict) -> TransactionPreprocessor:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"not a transactions preprocessor state: format {state.get('format')!r}, expected {STATE_FORMAT!r}"
            )
        cfg = dict(state["config"])
        pre = cls(PreprocessConfig(**{**cfg, "columns": ColumnMapping(**cfg["columns"])}))
        pre._state = dict(state)
        return pre

    def __repr__(self) -> str:
        fitted = f"{len(self.fields)} fields" if self._state else "not fitted"
        return f"TransactionPreprocessor({fitted}, columns={asdict(self.config.columns)})"
