"""Incremental scoring: per-event features of new transactions from a stored per-client state.

    store = StateStore.create("state.sqlite", model)        # or .open(path, model); or a ShardedStore
    score_new(model, store, history_table)                  # nightly batch: builds every client's state
    feats = score_new(model, store, new_rows)               # real time: features of the new rows only
    feats = score_new(model, store, {"client_id": 7, ...})  # one record (a dict) or a list of them

The state of a client is what the causal 1-layer GRU needs to continue (`state_store.py`): its GRU state, the
running sum of its states (history_distance), per history lag L >= 2 its last L states as that lag's head
reads them, its event count, last event time, last 64 transaction ids (duplicate check) and the time and
`anomaly_score` of its events in the last 24 h (at most DAY_EVENTS = 64, for `anomaly_score_24h`). Each call
encodes the rows with the fitted preprocessing (`rows.py`) and scores them (`scoring.py`: state read, numpy
feature math, state write) in one SQLite transaction; a `ShardedStore` (`sharded_state.py`) scores each
shard's clients in that shard's process and transaction.

Equal to `features(model, whole_table)` (test) for clients whose whole history fits one window of
`max_length` events. `features` restarts the GRU at each window start; the incremental state never does, so
for longer histories the two differ after the first window (the incremental one has more history).
`anomaly_score_24h` equals it while a client has at most DAY_EVENTS events in any 24 h (the report counts
clients whose day ring dropped an event still inside the window: "day_window_full") and same-time events are
not split across calls. Window-level columns (`order_score`, `position`, `window_events`) are not produced here.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.core.contract import SSLModel
from ssl_modal.transactions.event_math import EventMath
from ssl_modal.transactions.features import TRANSACTION_ID, _preprocessor, _read
from ssl_modal.transactions.rows import RowEncoder
from ssl_modal.transactions.scoring import apply_rows
from ssl_modal.transactions.sharded_state import ShardedStore
from ssl_modal.transactions.state_store import StateStore, model_fingerprint, require_causal_gru

__all__ = ["StateStore", "ShardedStore", "score_new", "model_fingerprint"]
log = logging.getLogger("ssl_modal")


def _encoder_of(store, model: SSLModel) -> RowEncoder:
    """The row encoder of the store's model, built once per store."""
    enc = store._rows
    if enc is None:
        enc = store._rows = RowEncoder(_preprocessor(model))
    return enc


@lru_cache(maxsize=64)
def _header(names: tuple) -> pd.Index:
    return pd.Index(list(names))  # immutable: shared by the results of one model


def _math_of(store, model: SSLModel) -> EventMath:
    """The numpy feature math of the store's model (weights copied once). Weights changed in place since
    (training on) make another model: refused like one."""
    math = store._math
    if math is None or math.version != math.current_version():
        if math is not None:
            store.check_model(model, force=True)
        math = store._math = EventMath(model)
    return math


def score_new(
    model: SSLModel,
    store: StateStore | ShardedStore,
    table,
    *,
    chunk_events: int = 256,
    max_events: int = 16384,
) -> pd.DataFrame:
    """Features of the rows of `table` (DataFrame, CSV/Parquet path, a record (dict) or a list of records) only:
    one row per input row, in input order, with its transaction id, client id, `scored` and the per-event
    feature columns; every client continues from its stored state (unknown clients start empty) and the store
    is updated in one transaction (a `ShardedStore`: one per shard; rows of shards that already hold this
    batch are not applied again: scored=False, counted in the report's "already_applied"). Rows older than
    their client's last stored event are refused (ValueError naming the client); transaction ids already in
    the store are listed in `result.attrs["report"]["duplicate_ids"]`. Two cores or more: a `ShardedStore`."""
    require_causal_gru(model)
    store.check_model(model)
    if isinstance(table, dict):
        table = [table]
    source = str(table) if isinstance(table, (str, Path)) else "records" if isinstance(table, list) else "table"
    encoder = _encoder_of(store, model)
    rows = encoder.encode(table if isinstance(table, list) else _read(table), source=source)
    math = _math_of(store, model)
    if isinstance(store, ShardedStore):
        names, feats, seen, new_clients, day_full, done = store.score(
            math, rows, encoder.to_hours, chunk_events, max_events
        )
    else:
        with store.transaction():
            names, feats, seen, new_clients, day_full = apply_rows(
                store, math, rows, encoder.to_hours, chunk_events, max_events
            )
        done = None
    duplicates = [] if seen is None or rows.tx is None else rows.tx[seen].tolist()
    if duplicates:
        log.warning(
            "score_new: %d transaction id(s) were already in the state (e.g. %s)", len(duplicates), duplicates[:3]
        )
    values = np.full((rows.rows_in, len(names)), np.nan, np.float32)
    scored = np.zeros(rows.rows_in, bool)
    at = rows.index if done is None else rows.index[done]  # done: events of shards that applied this batch
    values[at] = feats if done is None else feats[done]
    scored[at] = True
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
        "rows_scored": len(at),
        "clients": len(rows.clients),
        "duplicate_ids": sorted(duplicates),
        "new_clients": new_clients,
        "day_window_full": day_full,
    }
    if done is not None:
        result.attrs["report"]["already_applied"] = int(len(done) - done.sum())
    return result
