"""The scoring of encoded rows against one store's client states, inside its transaction (`apply_rows`): used by
`score_new` for a one-file `StateStore` and by each shard of a `ShardedStore` (in its own process).

Each call reads the states of its clients, refuses rows older than their client's last stored event, runs the
numpy feature math (`event_math.py`: the GRU steps all clients in lockstep, one step per event position; chunks
of at most `chunk_events` events per client and about `max_events` events), adds `anomaly_score` and its 24 h
mean, checks the transaction ids against each client's last ones and writes the new states.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ssl_modal.transactions.event_math import EventMath
from ssl_modal.transactions.features import ANOMALY_WINDOW_HOURS
from ssl_modal.transactions.rows import EncodedRows
from ssl_modal.transactions.state_store import ClientStates, StateStore, id_hashes
from ssl_modal.transactions.windows import continue_rings, day_means, seen_in_rings


class Applied(NamedTuple):
    """What `apply_rows` returns for the N events of its rows (in the rows' event order)."""

    names: list[str]
    feats: np.ndarray  # (N, F) float32
    seen: np.ndarray | None  # (N,) bool: the transaction id is among its client's stored last ids (None: no ids)
    new_clients: int
    day_full: int  # clients whose 24 h ring dropped an event still inside the window


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


def _run(
    math: EventMath,
    rows: EncodedRows,
    gap: np.ndarray,
    state: np.ndarray,
    events: np.ndarray,
    chunk_events: int,
    max_events: int,
) -> tuple[list[str], np.ndarray]:
    """Feature names and (N, F) features in `rows` order; `state` (C, width) is updated in place."""
    lengths = np.diff(rows.starts)
    count = events.copy()
    num_all = {**rows.num, "time_gap": gap.astype(np.float32)}
    names, feats = [], None
    for clients, r in _chunks(lengths, chunk_events, max_events):
        n = np.minimum(lengths[clients] - r * chunk_events, chunk_events)
        local = np.concatenate([[0], np.cumsum(n)[:-1]])
        idx = np.repeat(rows.starts[clients] + r * chunk_events - local, n) + np.arange(int(n.sum()))
        cat, num = {k: v[idx] for k, v in rows.cat.items()}, {k: v[idx] for k, v in num_all.items()}
        names, values, order, new = math.features(cat, num, n, state[clients], count[clients])
        if feats is None:
            feats = np.full((len(rows.index), len(names)), np.nan, np.float32)
        feats[idx[order]] = values
        state[clients] = new
        count[clients] += n
    assert feats is not None  # at least one event
    return names, feats


def _anomaly_columns(names, feats, rows: EncodedRows, old: ClientStates, to_hours: float, lengths):
    """`anomaly_score` (event_nll at the longest lag, as `features.anomaly_score`) and `anomaly_score_24h` (its
    mean over the client's last 24 h: the stored day ring and this call's events) appended to the features; the
    clients' new day rings, and which clients' rings dropped an event still inside the window (more than
    DAY_EVENTS events in 24 h: their later `anomaly_score_24h` averages the last DAY_EVENTS only)."""
    lags = sorted(int(c[len("event_nll_l") :]) for c in names if c.startswith("event_nll_l"))
    if not lags:
        return names, feats, (old.day_times, old.day_scores), np.zeros(len(lengths), bool)
    score = feats[:, names.index(f"event_nll_l{lags[-1]}")]
    hours, window = rows.times * to_hours, ANOMALY_WINDOW_HOURS
    day = day_means(old.day_times * to_hours, old.day_scores, hours, score.astype(np.float64), rows.starts, window)
    pad = np.full((len(lengths), 1), np.nan)
    times = continue_rings(np.concatenate([pad, old.day_times], 1), rows.times, rows.starts)
    scores = continue_rings(np.concatenate([pad.astype(np.float32), old.day_scores], 1), score, rows.starts)
    stale = ~(times * to_hours >= hours[rows.starts[1:] - 1][:, None] - window)  # NaN: empty, stays empty
    full = ~stale[:, 0]  # the (DAY_EVENTS + 1)-th most recent event is inside the window: it is dropped
    times[stale], scores[stale] = np.nan, np.nan
    feats = np.concatenate([feats, score[:, None], day[:, None].astype(np.float32)], 1)
    return names + ["anomaly_score", "anomaly_score_24h"], feats, (times[:, 1:], scores[:, 1:]), full


def apply_rows(
    store: StateStore,
    math: EventMath,
    rows: EncodedRows,
    to_hours: float,
    chunk_events: int = 256,
    max_events: int = 16384,
) -> Applied:
    """Score `rows` from `store`'s states and write the new ones; call inside `store.transaction()`.
    `to_hours`: hours per unit of `rows.times`."""
    lengths = np.diff(rows.starts)
    hashes = None if rows.tx is None else id_hashes(rows.tx)
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
    gap = np.log1p(np.fmax(rows.times - prev, 0.0) * to_hours)  # fmax: NaN -> 0
    state = old.state.copy()
    names, feats = _run(math, rows, gap, state, old.events, chunk_events, max_events)
    names, feats, day, day_full = _anomaly_columns(names, feats, rows, old, to_hours, lengths)
    seen, ids = None, old.ids
    if hashes is not None:
        seen, ids = seen_in_rings(old.ids, hashes, rows.starts), continue_rings(old.ids, hashes, rows.starts)
    last = rows.times[rows.starts[1:] - 1]
    store.write(rows.clients, ClientStates(old.events + lengths, last, state, ids, *day), old.events > 0)
    return Applied(names, feats, seen, int((old.events == 0).sum()), int(day_full.sum()))
