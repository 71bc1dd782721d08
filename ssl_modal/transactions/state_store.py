"""`StateStore`: the per-client GRU state of incremental scoring in SQLite, tied to one model.

One row per client: its event count, last event time and one float32 blob (`event_math.state_width`): the GRU
state to continue from, the running sum of its states (`history_distance`) and, per history lag L >= 2, its last
L states as that lag's residual head reads them (projected to the head's width, 64 instead of 128 floats in the
Sparkov recipe). Seen transaction ids are kept by client, as 64-bit hashes (pandas' fixed-key SipHash of
the id as text; the store checks on opening that this hash is unchanged): an id that comes again for the same
client is a duplicate; keyed by client, a batch's new ids touch about one index page per client, not one per
id. WAL journal: readers in other processes never block; `transaction()` holds the write lock from reading the
states to the commit, so two writers cannot interleave on a client, and a crash before the commit leaves the
previous state intact.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.core.checkpoint import weights_fingerprint
from ssl_modal.core.contract import SSLModel
from ssl_modal.transactions.event_math import state_width

FORMAT = "ssl_modal.transactions.incremental/2"
HASH_PROBE = "ssl_modal"  # its hash is stored at creation and compared on opening
CHUNK = 500  # SQL parameters per IN (...) query
RECENT_IDS = 64  # transaction ids remembered per client (duplicate check)


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


def _chunks(values: list, size: int = CHUNK):
    for i in range(0, len(values), size):
        yield values[i : i + size]


class StateStore:
    """Per-client state in SQLite (see the module docstring); refuses a store made by another model."""

    def __init__(self, path: str | Path, model: SSLModel, create: bool = False):
        require_causal_gru(model)
        self.path, self.width = Path(path), state_width(model)  # float32 values per client
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no state store here; create one with StateStore.create(path, model)")
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self.conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: the hot clients and id pages stay cached
        # checkpoint (copy the WAL into the database, with an fsync) every 64 MiB of WAL rather than 4 MiB: pages
        # rewritten by many batches (the active clients) are copied once, and fsyncs are 16x rarer
        self.conn.execute("PRAGMA wal_autocheckpoint=16384")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # under WAL still atomic; a power cut may lose the last batch
        self.model, self.fingerprint = model, model_fingerprint(model)
        self._math = self._rows = None  # the model's numpy feature math and row encoder, built on first use
        probe = str(int(id_hashes(np.array([HASH_PROBE]))[0]))
        with self.transaction():
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS clients (client TEXT PRIMARY KEY, events INTEGER, last_time REAL, "
                "state BLOB, ids BLOB)"
            )
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                rows = [("format", FORMAT), ("model", self.fingerprint), ("id_hash", probe)]
                self.conn.executemany("INSERT INTO meta VALUES (?, ?)", rows)
            elif meta.get("format") != FORMAT:
                raise ValueError(f"{self.path}: state format {meta.get('format')!r}, expected {FORMAT!r}")
            elif meta.get("model") != self.fingerprint:
                raise ValueError(self._other_model(meta.get("model", "")))
            elif meta.get("id_hash") != probe:
                raise ValueError(
                    f"{self.path}: transaction ids were hashed differently when this state was made "
                    f"(hash of {HASH_PROBE!r}: {meta.get('id_hash')}, now {probe}; another pandas version?); "
                    "rebuild the state"
                )

    def _other_model(self, found: str) -> str:
        return (
            f"{self.path}: this state was made by another model (weights fingerprint {found[:12]}..., this model "
            f"{self.fingerprint[:12]}...); build a new state with score_new on the client histories"
        )

    @classmethod
    def create(cls, path: str | Path, model: SSLModel) -> StateStore:
        return cls(path, model, create=True)

    @classmethod
    def open(cls, path: str | Path, model: SSLModel) -> StateStore:
        return cls(path, model)

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
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def clients(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM clients").fetchone()[0])

    def read(self, clients: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(events (C,) int64, last event time (C,) float64, state (C, width) float32, hashes of the last
        RECENT_IDS transaction ids (C, RECENT_IDS) int64, oldest first, 0 = none); unknown clients have
        0 events, a NaN time and zeros."""
        at = {c: i for i, c in enumerate(clients)}
        events, last = np.zeros(len(clients), np.int64), np.full(len(clients), np.nan)
        state = np.zeros((len(clients), self.width), np.float32)
        ids = np.zeros((len(clients), RECENT_IDS), np.int64)
        for chunk in _chunks(clients):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT client, events, last_time, state, ids FROM clients WHERE client IN ({marks})"
            rows = self.conn.execute(sql, chunk).fetchall()
            if rows:
                i = np.array([at[r[0]] for r in rows])
                events[i], last[i] = [r[1] for r in rows], [r[2] for r in rows]
                state[i] = np.frombuffer(b"".join(r[3] for r in rows), np.float32).reshape(len(rows), self.width)
                ids[i] = np.frombuffer(b"".join(r[4] for r in rows), np.int64).reshape(len(rows), RECENT_IDS)
        return events, last, state, ids

    def write(self, clients: list[str], events, last, state: np.ndarray, ids: np.ndarray) -> None:
        """Replace these clients' rows (inside `transaction()`)."""
        state, ids = np.ascontiguousarray(state, np.float32), np.ascontiguousarray(ids, np.int64)
        blobs = ((s.tobytes(), i.tobytes()) for s, i in zip(state, ids, strict=True))
        rows = ((c, n, t, *b) for c, n, t, b in zip(clients, events.tolist(), last.tolist(), blobs, strict=True))
        self.conn.executemany("INSERT OR REPLACE INTO clients VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.conn.close()
