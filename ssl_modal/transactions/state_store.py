"""`StateStore`: the per-client state of incremental scoring in SQLite, tied to one model.

One row per client: its event count, last event time and one blob, one after the other: the float32 model state
(`event_math.state_width`: the GRU state to continue from, the running sum of its states (`history_distance`) and,
per history lag L >= 2, its last L states as that lag's residual head reads them, projected to the head's width:
64 instead of 128 floats in the Sparkov recipe, circular: the client's event e in slot e % L); the 64-bit hashes
of its last RECENT_IDS transaction ids (pandas' fixed-key SipHash of the id as text; the store checks on opening
that this hash is unchanged): an id that comes again for the same client is a duplicate; and the time and
`anomaly_score` of its events in the last 24 h (at most DAY_EVENTS, for `anomaly_score_24h`: float64 times, then
float32 scores). One blob: one bytes object per client to build, bind and cache, and a batch's rows read back with
one `np.frombuffer`.

Atomicity: `transaction()` holds SQLite's write lock (BEGIN IMMEDIATE) from reading the states to the COMMIT, so
two writers cannot interleave on a client, and an error or a crash before the commit leaves the previous state
(SQLite rolls an uncommitted transaction back). WAL journal: readers in other processes never block.
synchronous=NORMAL: a commit is atomic and survives a crash of the process; after a power cut or OS crash the
last commits before it may be lost (the database stays consistent: it holds the state of an earlier commit).

Cache: the rows a connection wrote last are kept in memory (at most `cache_clients`, the most recently
written) and read from there while `PRAGMA data_version` (read under the write lock) says no other connection
has committed since; any other commit empties the cache first, so the cache never serves a stale row.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ssl_modal.core.checkpoint import weights_fingerprint
from ssl_modal.core.contract import SSLModel
from ssl_modal.transactions.event_math import state_width

FORMAT = "ssl_modal.transactions.incremental/4"
HASH_PROBE = "ssl_modal"  # its hash is stored at creation and compared on opening
CHUNK = 500  # SQL parameters per IN (...) query
RECENT_IDS = 64  # transaction ids remembered per client (duplicate check)
DAY_EVENTS = 64  # events of the last 24 h remembered per client (anomaly_score_24h)


class ClientStates(NamedTuple):
    """States of C clients; unknown clients have 0 events, a NaN time, zeros and NaN day entries."""

    events: np.ndarray  # (C,) int64
    last: np.ndarray  # (C,) float64, last event time
    state: np.ndarray  # (C, width) float32
    ids: np.ndarray  # (C, RECENT_IDS) int64 hashes of the last ids, oldest first, 0 = none
    day_times: np.ndarray  # (C, DAY_EVENTS) float64 times of the last 24 h's events, oldest first, NaN = none
    day_scores: np.ndarray  # (C, DAY_EVENTS) float32 their anomaly_score


def model_fingerprint(model: SSLModel) -> str:
    """sha256 over the model's weights (names, shapes and bytes): a state belongs to exactly these weights."""
    return weights_fingerprint(model)


def require_causal_gru(model: SSLModel) -> None:
    c = model.encoder.config
    if c.kind != "gru" or c.bidirectional or c.num_layers != 1:
        raise ValueError(
            f"incremental scoring needs the causal 1-layer unidirectional GRU encoder; this model has "
            f"kind={c.kind!r}, bidirectional={c.bidirectional}, num_layers={c.num_layers}"
        )


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """int64 hashes of transaction ids given as text."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False).view(np.int64)


class StateStore:
    """Per-client state in SQLite (see the module docstring); refuses a store made by another model."""

    def __init__(
        self,
        path: str | Path,
        model: SSLModel | None,
        create: bool = False,
        cache_clients: int = 16384,
        *,
        shard: str | None = None,
        identity: tuple[str, int] | None = None,
    ):
        """`shard`: "k/S" for shard k of a `ShardedStore` (stored at creation, compared on opening); `identity`:
        (fingerprint, width) in place of `model` (a shard's helper process has the numpy math, not the model)."""
        if model is not None:
            require_causal_gru(model)
            identity = (model_fingerprint(model), state_width(model))
        if identity is None:
            raise ValueError("StateStore: give the model (or its identity: weights fingerprint, state width)")
        self.path, (self.fingerprint, self.width) = Path(path), identity  # width: float32 values per client
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no state store here; create one with StateStore.create(path, model)")
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.execute("PRAGMA page_size=8192")  # new files: a client's row (~6.4 KB) in one page, no overflow
        self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages
        # checkpoint (copy the WAL into the database, with an fsync) every 8,192 pages (64 MiB) of WAL rather than
        # 1,000: pages rewritten by many batches (the active clients) are copied once, and fsyncs are 8x rarer
        self.conn.execute("PRAGMA wal_autocheckpoint=8192")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # see the module docstring for what it keeps
        self.model = model
        self._math = self._rows = None  # the model's numpy feature math and row encoder, built on first use
        self.cache_clients, self._cache, self._staged, self._version = cache_clients, {}, None, None
        probe = str(int(id_hashes(np.array([HASH_PROBE]))[0]))
        with self.transaction():
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS clients "
                "(client TEXT PRIMARY KEY, events INTEGER, last_time REAL, state BLOB)"
            )
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                rows = [("format", FORMAT), ("model", self.fingerprint), ("id_hash", probe)]
                self.conn.executemany("INSERT INTO meta VALUES (?, ?)", rows + ([("shard", shard)] if shard else []))
                meta["shard"] = shard
            elif meta.get("format") != FORMAT:
                raise ValueError(
                    f"{self.path}: state format {meta.get('format')!r}, expected {FORMAT!r}; rebuild the state "
                    "with score_new on the client histories"
                )
            elif meta.get("model") != self.fingerprint:
                raise ValueError(self._other_model(meta.get("model", "")))
            elif meta.get("id_hash") != probe:
                raise ValueError(
                    f"{self.path}: transaction ids were hashed differently when this state was made "
                    f"(hash of {HASH_PROBE!r}: {meta.get('id_hash')}, now {probe}; another pandas version?); "
                    "rebuild the state"
                )
            if meta.get("shard") != shard:
                raise ValueError(
                    f"{self.path}: "
                    + (
                        f"shard {meta['shard']} of a sharded store: open its folder with ShardedStore"
                        if meta.get("shard")
                        else "a one-file store, not a shard"
                    )
                    + f" (expected shard {shard})"
                )

    def _other_model(self, found: str) -> str:
        return (
            f"{self.path}: this state was made by another model (weights fingerprint {found[:12]}..., this model "
            f"{self.fingerprint[:12]}...); build a new state with score_new on the client histories"
        )

    @classmethod
    def create(cls, path: str | Path, model: SSLModel, **kw) -> StateStore:
        return cls(path, model, create=True, **kw)

    @classmethod
    def open(cls, path: str | Path, model: SSLModel, **kw) -> StateStore:
        return cls(path, model, **kw)

    def check_model(self, model: SSLModel, force: bool = False) -> None:
        """Refuse a model other than the store's (the same object passes without hashing its weights
        unless `force`)."""
        if force or model is not self.model:
            fp = model_fingerprint(model)
            if fp != self.fingerprint:
                raise ValueError(self._other_model(fp).replace("this model", "the model given"))

    @contextmanager
    def transaction(self):
        """The write lock from here to the commit; everything or nothing is written."""
        self.conn.execute("BEGIN IMMEDIATE")
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:  # another connection committed: cached rows may be stale
            self._cache, self._version = {}, version
        self._staged = {}
        try:
            yield self
        except BaseException:
            self._staged = None
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        staged, self._staged = self._staged, None
        if self.cache_clients > 0:
            for c, row in staged.items():
                self._cache.pop(c, None)
                self._cache[c] = row  # most recently written last
            while len(self._cache) > self.cache_clients:
                self._cache.pop(next(iter(self._cache)))

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Inside `transaction()`: committed with the batch."""
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def clients(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM clients").fetchone()[0])

    def _layout(self) -> list:
        """(dtype, values per client) of the parts of a client's blob: state, ids, day times, day scores."""
        return [(np.float32, self.width), (np.int64, RECENT_IDS), (np.float64, DAY_EVENTS), (np.float32, DAY_EVENTS)]

    def read(self, clients: list[str]) -> ClientStates:
        """The clients' states (see `ClientStates`), from the cache or SQLite."""
        C = len(clients)
        events, last = np.zeros(C, np.int64), np.full(C, np.nan)
        parts = [np.zeros((C, n), t) for t, n in self._layout()]
        parts[2][:], parts[3][:] = np.nan, np.nan  # empty day rings
        cache = self._cache if self._staged is not None else {}  # trusted only inside a transaction
        found = [cache.get(c) for c in clients]
        missing = [c for c, r in zip(clients, found, strict=True) if r is None]
        if missing:
            at = {c: i for i, c in enumerate(clients)}
            for i in range(0, len(missing), CHUNK):
                chunk = missing[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT client, events, last_time, state FROM clients WHERE client IN ({marks})"
                for c, *row in self.conn.execute(sql, chunk):
                    found[at[c]] = tuple(row)
        i = np.array([j for j, r in enumerate(found) if r is not None], np.int64)
        if len(i):
            rows = [found[j] for j in i.tolist()]
            events[i], last[i] = [r[0] for r in rows], [r[1] for r in rows]
            blob = np.frombuffer(b"".join(r[2] for r in rows), np.uint8).reshape(len(rows), -1)
            at = 0
            for part, (dtype, n) in zip(parts, self._layout(), strict=True):
                size = n * np.dtype(dtype).itemsize
                part[i] = blob[:, at : at + size].view(dtype)
                at += size
        return ClientStates(events, last, *parts)

    def write(self, clients: list[str], new: ClientStates, known: np.ndarray) -> None:
        """Store these clients' states (inside `transaction()`); `known`: (C,) bool, the client has a row."""
        values = (new.state, new.ids, new.day_times, new.day_scores)
        sizes = [n * np.dtype(t).itemsize for t, n in self._layout()]
        blob = np.empty((len(clients), sum(sizes)), np.uint8)
        at = 0
        for v, (dtype, _), size in zip(values, self._layout(), sizes, strict=True):
            blob[:, at : at + size] = np.ascontiguousarray(v, dtype).view(np.uint8)
            at += size
        rows = list(zip(new.events.tolist(), new.last.tolist(), map(bytes, blob), strict=True))
        known = np.asarray(known, bool)
        if known.all():
            self.conn.executemany(
                "UPDATE clients SET events=?, last_time=?, state=? WHERE client=?",
                [(*r, c) for c, r in zip(clients, rows, strict=True)],
            )
        else:
            k = known.tolist()
            self.conn.executemany(
                "UPDATE clients SET events=?, last_time=?, state=? WHERE client=?",
                [(*r, c) for c, r, old in zip(clients, rows, k, strict=True) if old],
            )
            self.conn.executemany(
                "INSERT INTO clients VALUES (?, ?, ?, ?)",
                [(c, *r) for c, r, old in zip(clients, rows, k, strict=True) if not old],
            )
        self._staged.update(zip(clients, rows, strict=True))

    def close(self) -> None:
        self.conn.close()
