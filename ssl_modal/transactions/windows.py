"""Per-client rings of incremental scoring: each client's last K values continued by the new events of a call.

Events of a call are grouped by client (client c's at starts[c]:starts[c+1], time order); a ring (C, K) holds
each client's last K stored values, oldest first, padding (0 or NaN) at the front.
"""

from __future__ import annotations

import numpy as np


def continue_rings(ring: np.ndarray, new: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The last K values of [ring ; new events] per client: (C, K)."""
    C, K = ring.shape
    lengths = np.diff(starts)
    p = lengths[:, None] + np.arange(K)[None]  # positions n .. n+K-1 of [ring (K) ; new (n)]
    full = np.concatenate([ring.ravel(), new.astype(ring.dtype, copy=False)])
    return full[np.where(p < K, np.arange(C)[:, None] * K + p, C * K + starts[:-1, None] + p - K)]


def seen_in_rings(ring: np.ndarray, new: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Which new values (N,) their client's ring (C, K) holds."""
    client = np.repeat(np.arange(len(ring)), np.diff(starts))
    seen = np.zeros(len(new), bool)
    for i in range(0, len(new), 4096):  # (chunk, K) comparisons at a time
        seen[i : i + 4096] = (ring[client[i : i + 4096]] == new[i : i + 4096, None]).any(1)
    return seen


def day_means(
    day_hours: np.ndarray,
    day_scores: np.ndarray,
    hours: np.ndarray,
    scores: np.ndarray,
    starts: np.ndarray,
    window: float,
) -> np.ndarray:
    """Per new event: the mean of the finite scores of its client's events in [t - window, t] (stored ring
    entries and this call's events, same-time events of the call included, as `features.windowed_mean`); NaN
    where the event's own score is NaN. hours: the call's event times (N,), day_hours (C, K) the ring's (NaN:
    empty)."""
    lengths = np.diff(starts)
    client = np.repeat(np.arange(len(lengths)), lengths)
    lo = hours - window
    ring_sum, ring_n = np.zeros(len(hours)), np.zeros(len(hours), np.int64)
    newest = np.fmax.reduce(day_hours, axis=1, initial=-np.inf)  # (C,), NaN skipped, -inf: empty ring
    reach = np.flatnonzero(lo <= newest[client])  # events whose window reaches back into the stored ring
    if len(reach):
        ring_t, ring_s = day_hours[client[reach]], day_scores[client[reach]]
        ok = (ring_t >= lo[reach, None]) & np.isfinite(ring_s)  # NaN times compare False; stored times <= t
        ring_sum[reach], ring_n[reach] = np.where(ok, ring_s, 0.0).sum(1), ok.sum(1)
    valid = np.isfinite(scores)
    total = np.concatenate([[0.0], np.cumsum(np.where(valid, scores, 0.0))])
    count = np.concatenate([[0], np.cumsum(valid)])
    # this call's events of the same client in [t - window, t]: a sorted key per client, clients apart
    span = float(np.nanmax(hours) - np.nanmin(hours)) + window + 1.0 if len(hours) else 1.0
    key = client * span + (hours - np.nanmin(hours))
    start = np.searchsorted(key, key - window, side="left")
    end = np.searchsorted(key, key, side="right")
    n = count[end] - count[start] + ring_n
    mean = np.divide(total[end] - total[start] + ring_sum, n, out=np.full(len(n), np.nan), where=n > 0)
    return np.where(valid, mean, np.nan)
