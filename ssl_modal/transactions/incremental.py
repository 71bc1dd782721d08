"""Incremental scoring: per-event features of new transactions from a stored per-client state.

    store = StateStore.create("state.sqlite", model)        # or StateStore.open(path, model)
    score_new(model, store, history_table)                  # nightly batch: builds every client's state
    feats = score_new(model, store, new_rows)               # real time: features of the new rows only
    feats = score_new(model, store, {"client_id": 7, ...})  # one record (a dict) or a list of them

The state of a client is what the causal 1-layer GRU needs to continue (`state_store.py`): its GRU state, the
running sum of its states (history_distance), per history lag L >= 2 its last L states as that lag's head
reads them, its event count, last event time, last 64 transaction ids (duplicate check) and the time and
`anomaly_score` of its events in the last 24 h (at most DAY_EVENTS = 64, for `anomaly_score_24h`). Each call
encodes the rows with the fitted preprocessing (`rows.py`), reads the states of its clients, runs the numpy
feature math (`event_math.py`: the GRU steps all clients in lockstep, one step per event position; chunks of
at most `chunk_events` events per client and about `max_events` events), and writes the new states in the
same SQLite transaction that read them.

Equal to `features(model, whole_table)` (test) for clients whose whole history fits one window of
`max_length` events. `features` restarts the GRU at each window start; the incremental state never does, so
for longer histories the two differ after the first window (the incremental one has more history).
`anomaly_score_24h` equals it while a client has at most DAY_EVENTS events in any 24 h (the report counts
clients whose day ring dropped an event still inside the window: "day_window_full") and same-time events are
not split across calls. Window-level columns (`order_score`, `position`, `window_events`) are not produced here.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.core.contract import SSLModel
from ssl_modal.transactions.event_math import EventMath
from ssl_modal.transactions.features import ANOMALY_WINDOW_HOURS, TRANSACTION_ID, _preprocessor, _read
from ssl_modal.transactions.math_worker import MathWorker
from ssl_modal.transactions.rows import EncodedRows, RowEncoder
from ssl_modal.transactions.state_store import (
    ClientStates,
    StateStore,
    id_hashes,
    model_fingerprint,
    require_causal_gru,
)
from ssl_modal.transactions.windows import continue_rings, day_means, seen_in_rings

__all__ = ["StateStore", "score_new", "model_fingerprint"]
log = logging.getLogger("ssl_modal")


def _encoder_of(store: StateStore, model: SSLModel) -> RowEncoder:
    """The row encoder of the store's model, built once per store."""
    enc = store._rows
    if enc is None:
        enc = store._rows = RowEncoder(_preprocessor(model))
    return enc


def _chunks(lengths: np.ndarray, chunk_events: int, max_events: int):
    """(clients, round) batches: round r covers events r*chunk_events ... (at most chunk_events) of each client
    that has them; clients with the most events first, about max_events events per batch (at least one client)."""
    for r in range(int(-(-lengths.max() // chunk_events))):
        left = np.minimum(lengths - r * chunk_events, chunk_events)
        active = np.flatnonzero(left > 0)
        active = active[np.argsort(-left[active], kind="stable")]
        total, i = np.cumsum(left[active]), 0
        while i < len(active):
            j = max(i + 1, int(np.searchsorted(total, (total[i - 1] if i else 0) + max_events, "right")))
            yield active[i:j], r
            i = j


@lru_cache(maxsize=64)
def _header(names: tuple) -> pd.Index:
    return pd.Index(list(names))  # immutable: shared by the results of one model


def _math_of(store: StateStore, model: SSLModel) -> EventMath:
    """The numpy feature math of the store's model (weights copied once). Weights changed in place since
    (training on) make another model: refused like one."""
    math = store._math
    if math is None or math.version != math.current_version():
        if math is not None:
            store.check_model(model, force=True)
        math = store._math = EventMath(model)
    return math


SPLIT_EVENTS = 256  # a chunk with at least twice this many events is scored as two client halves (threads/processes)
_POOL: list = []


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(2, thread_name_prefix="ssl_modal_score"))
    return _POOL[0]


def _worker_of(store: StateStore, math: EventMath) -> MathWorker:
    """The store's helper process for `processes=2`, (re)started for the current math."""
    worker = store._worker
    if worker is None or worker.math is not math:
        if worker is not None:
            worker.close()
        worker = store._worker = MathWorker(math)
    return worker


def _run(
    math: EventMath,
    rows: EncodedRows,
    gap: np.ndarray,
    state: np.ndarray,
    events: np.ndarray,
    chunk_events: int,
    max_events: int,
    threads: int,
    worker: MathWorker | None = None,
) -> tuple[list[str], np.ndarray]:
    """Feature names and (N, F) features in `rows` order; `state` (C, width) is updated in place. A large chunk
    runs as two halves of its clients (alternate clients by size) in two threads (numpy and torch release the
    GIL in their array work) or, with a `worker`, one half in the helper process and one in this one."""
    lengths = np.diff(rows.starts)
    count = events.copy()
    num_all = {**rows.num, "time_gap": gap.astype(np.float32)}

    def inputs(clients, r):
        n = np.minimum(lengths[clients] - r * chunk_events, chunk_events)
        local = np.concatenate([[0], np.cumsum(n)[:-1]])
        idx = np.repeat(rows.starts[clients] + r * chunk_events - local, n) + np.arange(int(n.sum()))
        cat, num = {k: v[idx] for k, v in rows.cat.items()}, {k: v[idx] for k, v in num_all.items()}
        return idx, (cat, num, n, state[clients], count[clients])

    def step(clients, r):
        idx, args = inputs(clients, r)
        names, values, order, new = math.features(*args)
        return clients, args[2], idx[order], names, values, new

    names, feats = None, None
    for clients, r in _chunks(lengths, chunk_events, max_events):
        size = np.minimum(lengths[clients] - r * chunk_events, chunk_events).sum()
        split = size >= 2 * SPLIT_EVENTS and len(clients) > 1
        if worker is not None and split:
            idx, args = inputs(clients[0::2], r)
            worker.submit(*args)
            mine = step(clients[1::2], r)
            names, values, order, new = worker.result()
            parts = [(clients[0::2], args[2], idx[order], names, values, new), mine]
        elif threads > 1 and split:
            parts = list(_pool().map(step, (clients[0::2], clients[1::2]), (r, r)))
        else:
            parts = [step(clients, r)]
        for part, n, idx, names, values, new in parts:
            if feats is None:
                feats = np.full((len(rows.index), len(names)), np.nan, np.float32)
            feats[idx] = values
            state[part] = new
            count[part] += n
    return names, feats


def _anomaly_columns(names, feats, rows: EncodedRows, old: ClientStates, hours_of, lengths):
    """`anomaly_score` (event_nll at the longest lag, as `features.anomaly_score`) and `anomaly_score_24h` (its
    mean over the client's last 24 h: the stored day ring and this call's events) appended to the features; the
    clients' new day rings, and which clients' rings dropped an event still inside the window (more than
    DAY_EVENTS events in 24 h: their later `anomaly_score_24h` averages the last DAY_EVENTS only)."""
    lags = sorted(int(c[len("event_nll_l") :]) for c in names if c.startswith("event_nll_l"))
    if not lags:
        return names, feats, (old.day_times, old.day_scores), np.zeros(len(lengths), bool)
    score = feats[:, names.index(f"event_nll_l{lags[-1]}")]
    hours, window = hours_of(rows.times), ANOMALY_WINDOW_HOURS
    day = day_means(hours_of(old.day_times), old.day_scores, hours, score.astype(np.float64), rows.starts, window)
    pad = np.full((len(lengths), 1), np.nan)
    times = continue_rings(np.concatenate([pad, old.day_times], 1), rows.times, rows.starts)
    scores = continue_rings(np.concatenate([pad.astype(np.float32), old.day_scores], 1), score, rows.starts)
    stale = ~(hours_of(times) >= hours[rows.starts[1:] - 1][:, None] - window)  # NaN: empty, stays empty
    full = ~stale[:, 0]  # the (DAY_EVENTS + 1)-th most recent event is inside the window: it is dropped
    times[stale], scores[stale] = np.nan, np.nan
    feats = np.concatenate([feats, score[:, None], day[:, None].astype(np.float32)], 1)
    return names + ["anomaly_score", "anomaly_score_24h"], feats, (times[:, 1:], scores[:, 1:]), full


def score_new(
    model: SSLModel,
    store: StateStore,
    table,
    *,
    chunk_events: int = 256,
    max_events: int = 16384,
    threads: int = 1,
    processes: int = 1,
) -> pd.DataFrame:
    """Features of the rows of `table` (DataFrame, CSV/Parquet path, a record (dict) or a list of records) only:
    one row per input row, in input order, with its transaction id, client id, `scored` and the per-event
    feature columns; every client continues from its stored state (unknown clients start empty) and the store
    is updated in one transaction. Rows older than their client's last stored event are refused (ValueError
    naming the client); transaction ids already in the store are listed in
    `result.attrs["report"]["duplicate_ids"]`. threads=2: chunks of >= 512 events run as two client halves in
    two threads (faster only while the second core is idle; slower on this shared machine, docs/benchmarks.md).
    processes=2: such chunks run as two client halves, one in a helper process (`math_worker.py`, started on
    first use and kept by the store; its state reads and writes stay in this process's one transaction)."""
    for key, value in (("threads", threads), ("processes", processes)):
        if value not in (1, 2):
            raise ValueError(f"score_new: {key} must be 1 or 2 (client halves), found {value!r}")
    require_causal_gru(model)
    store.check_model(model)
    if isinstance(table, dict):
        table = [table]
    source = str(table) if isinstance(table, (str, Path)) else "records" if isinstance(table, list) else "table"
    encoder = _encoder_of(store, model)
    rows = encoder.encode(table if isinstance(table, list) else _read(table), source=source)
    C, lengths = len(rows.clients), np.diff(rows.starts)
    hashes = None if rows.tx is None else id_hashes(rows.tx)
    with store.transaction():
        old = store.read(rows.clients)
        first_time = rows.times[rows.starts[:-1]]
        late = np.flatnonzero(first_time < old.last)  # NaN (unknown client) compares False
        if len(late):
            c = late[0]
            raise ValueError(
                f"score_new: client '{rows.clients[c]}' has a new event at {first_time[c]} older than its last "
                f"stored event ({old.last[c]}); out-of-order events are refused ({len(late)} client(s) in this table)"
            )
        prev = np.concatenate([[np.nan], rows.times[:-1]])
        prev[rows.starts[:-1]] = old.last  # the stored last event (NaN: none, gap 0 as in `features`)
        gap = np.log1p(np.fmax(rows.times - prev, 0.0) * encoder.to_hours)  # fmax: NaN -> 0
        state = old.state.copy()
        math = _math_of(store, model)
        worker = _worker_of(store, math) if processes > 1 else None
        names, feats = _run(math, rows, gap, state, old.events, chunk_events, max_events, threads, worker)
        names, feats, day, day_full = _anomaly_columns(names, feats, rows, old, encoder.hours, lengths)
        seen, ids = None, old.ids
        if hashes is not None:
            seen, ids = seen_in_rings(old.ids, hashes, rows.starts), continue_rings(old.ids, hashes, rows.starts)
        last = rows.times[rows.starts[1:] - 1]
        new = ClientStates(old.events + lengths, last, state, ids, *day)
        store.write(rows.clients, new, old.events > 0)
    duplicates = [] if seen is None else rows.tx[seen].tolist()
    if duplicates:
        log.warning(
            "score_new: %d transaction id(s) were already in the state (e.g. %s)", len(duplicates), duplicates[:3]
        )
    values = np.full((rows.rows_in, len(names)), np.nan, np.float32)
    values[rows.index] = feats
    scored = np.zeros(rows.rows_in, bool)
    scored[rows.index] = True
    cols = encoder.columns  # the keys keep the input's column names and dtypes, as in `features`
    keys = [rows.keys[cols.transaction_id] if cols.transaction_id else np.arange(rows.rows_in)]
    keys += [rows.keys[cols.client_id], scored]
    header = _header((cols.transaction_id or TRANSACTION_ID, cols.client_id, "scored", *names))
    # one block per key column and views of `values` (pandas' own constructor for known-good arrays; the
    # public ones cost about 1 ms for ~40 columns, a fifth of a single-event call)
    result = pd.DataFrame._from_arrays(
        keys + list(values.T), header, pd.RangeIndex(rows.rows_in), verify_integrity=False
    )
    result.attrs["report"] = {
        **rows.report,
        "rows_scored": int(len(rows.index)),
        "clients": C,
        "duplicate_ids": sorted(duplicates),
        "new_clients": int((old.events == 0).sum()),
        "day_window_full": int(day_full.sum()),
    }
    return result
