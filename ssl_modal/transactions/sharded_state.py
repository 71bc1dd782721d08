"""`ShardedStore`: the client states of incremental scoring in S SQLite files, each scored by its own process.

    store = ShardedStore.create("state/", model, shards=2)   # or ShardedStore.open("state/", model)
    store.start(model)                                       # optional: the helpers started now, not on first use
    feats = score_new(model, store, batch)                   # as with a one-file StateStore

A client belongs to shard hash(client id) mod S (the store's id hash, checked on opening); shard k is the file
`shard-k-of-S.sqlite`, a `StateStore` of its own (same format, same model check; it records "k/S" and refuses
being opened as another shard or as a one-file store). The calling process encodes a call's rows, splits them by
shard and scores shard 0 itself; shards 1..S-1 are scored end to end (state read, feature math, state write,
commit) by helper processes (`math_worker.py`: one per shard, started on first use, pinned to other CPUs), each
owning its file's one writing connection. The result comes back in input order as with one file.

Atomicity is per shard, not per batch. A call with rows in several shards runs in two phases: every shard reads,
scores and writes in its open transaction, and only when all succeeded (no out-of-order row, no bad input) are
they told to commit; an error before that rolls every shard back (nothing applied). A crash between the
shards' commits (a process killed) leaves some shards with the batch and others without it. Each
shard stores the id of the last batch it committed (a content hash of the encoded rows: clients, times, fields,
transaction ids), in the same transaction: re-sending the same batch after such a crash applies it to the
shards that lack it, and the shards that hold it skip their part, whose rows come back with scored=False
(`report["already_applied"]`; their features were in the lost answer). A client's state is never partial: it
lives in one shard, written in one transaction. Only the last batch is remembered: re-send the failed batch
before the next one (a later batch overwrites the id; a re-send after it is then refused by the out-of-order
check or reported as duplicate ids). A batch every shard already holds is refused (ValueError). An identical
batch sent twice on purpose (same rows, same times) is taken for a re-send. After a power cut a shard may
also have lost its last few commits (`synchronous=NORMAL`, as one file): rescore from the stored last times.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from ssl_modal.core.contract import SSLModel
from ssl_modal.transactions.event_math import EventMath, state_width
from ssl_modal.transactions.math_worker import MathWorker
from ssl_modal.transactions.rows import EncodedRows
from ssl_modal.transactions.scoring import Applied, apply_rows
from ssl_modal.transactions.state_store import StateStore, id_hashes, model_fingerprint, require_causal_gru

_FILE = re.compile(r"shard-(\d+)-of-(\d+)\.sqlite")


def batch_id(rows: EncodedRows) -> str:
    """A content hash of a call's encoded rows (what a re-sent batch repeats)."""
    h = hashlib.blake2b(digest_size=16)
    h.update("\x1f".join(rows.clients).encode())
    for a in (rows.starts, rows.times, *rows.cat.values(), *rows.num.values()):
        h.update(np.ascontiguousarray(a).tobytes())
    if rows.tx is not None:
        h.update("\x1f".join(map(str, rows.tx.tolist())).encode())
    return h.hexdigest()


class ShardServer:
    """One shard's store and the scoring of its clients' rows (in the calling process for shard 0, else in a
    helper process: pickled without its connection, which it opens there on first use)."""

    def __init__(self, path: Path, shard: str, identity: tuple, math: EventMath, to_hours: float, cache: int):
        self.path, self.shard, self.identity, self.cache = path, shard, identity, cache
        self.math, self.to_hours = math, to_hours
        self.store: StateStore | None = None
        self._tx: Any = None  # the open transaction of `prepare`

    def __getstate__(self) -> dict:
        return {**self.__dict__, "store": None, "_tx": None}

    def _open(self) -> StateStore:
        if self.store is None:
            self.store = StateStore(self.path, None, cache_clients=self.cache, shard=self.shard, identity=self.identity)
        return self.store

    def prepare(self, rows: EncodedRows, batch: str, chunk_events: int, max_events: int) -> Applied | None:
        """Score and write `rows` in an open transaction (None, nothing open: this shard holds `batch`)."""
        store = self._open()
        tx = store.transaction()
        tx.__enter__()
        try:
            if store.meta("batch") == batch:
                tx.__exit__(None, None, None)
                return None
            out = apply_rows(store, self.math, rows, self.to_hours, chunk_events, max_events)
            store.set_meta("batch", batch)
        except BaseException as exc:
            tx.__exit__(type(exc), exc, exc.__traceback__)  # rolls back
            raise
        self._tx = tx
        return out

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.__exit__(None, None, None)

    def abort(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            exc = RuntimeError("aborted: another shard failed")
            tx.__exit__(RuntimeError, exc, None)

    def ready(self) -> str:
        self._open()
        return self.shard

    def apply(self, rows: EncodedRows, batch: str, chunk_events: int, max_events: int) -> Applied | None:
        """`prepare` and `commit` (the batch's only shard)."""
        out = self.prepare(rows, batch, chunk_events, max_events)
        self.commit()
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class ShardedStore:
    """Client states in `shards` SQLite files under the folder `path` (see the module docstring)."""

    def __init__(self, path: str | Path, model: SSLModel, shards: int | None = None, create: bool = False, **kw):
        require_causal_gru(model)
        self.path, self.model, self.cache = Path(path), model, kw.get("cache_clients", 16384)
        found = {int(m[2]) for f in self.path.glob("shard-*-of-*.sqlite") if (m := _FILE.fullmatch(f.name))}
        if len(found) > 1:
            raise ValueError(f"{self.path}: shard files of several shard counts {sorted(found)}; keep one set")
        if found and shards is not None and shards not in found:
            raise ValueError(
                f"{self.path}: a store of {found.pop()} shards, {shards} requested (clients are hashed by the "
                "shard count: rebuild the state to change it)"
            )
        if not found and not create:
            raise FileNotFoundError(f"{self.path}: no sharded state here; create one with ShardedStore.create")
        S = found.pop() if found else shards
        if not isinstance(S, int) or S < 1:
            raise ValueError(f"ShardedStore: shards must be a positive integer, found {S!r}")
        self.shards, self.identity = S, (model_fingerprint(model), state_width(model))
        self.files = [self.path / f"shard-{k}-of-{S}.sqlite" for k in range(S)]
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        missing = [f.name for f in self.files if not f.is_file()]
        if missing and len(missing) < S:
            raise FileNotFoundError(f"{self.path}: shard files missing: {missing}")
        for k, f in enumerate(self.files[1:], 1):  # created, or checked (format, model, shard) now
            StateStore(f, None, create=create, shard=f"{k}/{S}", identity=self.identity).close()
        self.local = StateStore(self.files[0], model, create=create, shard=f"0/{S}", **kw)
        self.fingerprint = self.local.fingerprint
        self._math = self._rows = None  # as on a StateStore: the model's math and row encoder, built on first use
        self._servers: list = []

    @classmethod
    def create(cls, path: str | Path, model: SSLModel, shards: int, **kw) -> ShardedStore:
        return cls(path, model, shards, create=True, **kw)

    @classmethod
    def open(cls, path: str | Path, model: SSLModel, **kw) -> ShardedStore:
        return cls(path, model, **kw)

    def check_model(self, model: SSLModel, force: bool = False) -> None:
        self.local.check_model(model, force)

    def shard_of(self, clients: list[str]) -> np.ndarray:
        return id_hashes(np.asarray(clients, dtype=object)).view(np.uint64) % np.uint64(self.shards)

    def clients(self) -> int:
        total = 0
        for f in self.files:
            with closing(sqlite3.connect(f)) as conn:
                total += conn.execute("SELECT COUNT(*) FROM clients").fetchone()[0]
        return int(total)

    def start(self, model: SSLModel) -> None:
        """Start the helper processes now (1-4 s each, in parallel) and wait until each has opened its shard, so
        that the first `score_new` call does not wait for them."""
        from ssl_modal.transactions.incremental import _encoder_of, _math_of

        self.check_model(model)
        helpers = self._started(_math_of(self, model), _encoder_of(self, model).to_hours)[1:]
        for h in helpers:
            h.send("ready")
        for h in helpers:
            h.result()

    def _started(self, math: EventMath, to_hours: float) -> list:
        """[shard 0's server, helper 1, ...], (re)started for this math; a helper that died is restarted."""
        s = self._servers
        if not s or s[0].math is not math:
            self._close_helpers()
            s[:] = [ShardServer(self.files[0], f"0/{self.shards}", self.identity, math, to_hours, self.cache)]
            s[0].store = self.local
            s += [None] * (self.shards - 1)
        for k in range(1, self.shards):
            if s[k] is None or s[k].process.poll() is not None:
                server = ShardServer(self.files[k], f"{k}/{self.shards}", self.identity, math, to_hours, self.cache)
                s[k] = MathWorker(server, k - 1)
        return s

    def score(self, math: EventMath, rows: EncodedRows, to_hours: float, chunk_events: int, max_events: int):
        """(names, feats (N, F), seen (N,) or None, new clients, day_full, done (N,) bool: scored here) for
        `score_new`; shards 1.. in their helpers, two-phase when several shards have rows."""
        servers, batch = self._started(math, to_hours), batch_id(rows)
        shard = self.shard_of(rows.clients)
        parts = [(k, *rows.take(np.flatnonzero(shard == k))) for k in range(self.shards) if (shard == k).any()]
        args = (batch, chunk_events, max_events)
        if len(parts) == 1:  # one shard: its own transaction is the batch's
            k, pos, part = parts[0]
            if k == 0:
                results = {0: servers[0].apply(part, *args)}
            else:
                servers[k].send("apply", part, *args)
                results = {k: servers[k].result()}
        else:
            results = self._two_phase(servers, parts, args)
        applied = {k: a for k, a in results.items() if a is not None}
        if not applied:
            raise ValueError(
                f"score_new: every shard of {self.path} already holds this batch (a re-sent batch); nothing applied"
            )
        first = next(iter(applied.values()))
        N = len(rows.times)
        feats, done = np.full((N, len(first.names)), np.nan, np.float32), np.zeros(N, bool)
        seen = None if first.seen is None else np.zeros(N, bool)
        for k, pos, _ in parts:
            if k in applied:
                feats[pos], done[pos] = applied[k].feats, True
                if seen is not None:
                    seen[pos] = applied[k].seen
        new_clients = sum(a.new_clients for a in applied.values())
        return first.names, feats, seen, new_clients, sum(a.day_full for a in applied.values()), done

    def _two_phase(self, servers: list, parts: list, args: tuple) -> dict:
        remote = [k for k, _, _ in parts if k]
        for k, _, part in parts:
            if k:
                servers[k].send("prepare", part, *args)
        results, error = {}, None
        if parts[0][0] == 0:
            try:
                results[0] = servers[0].prepare(parts[0][2], *args)
            except BaseException as exc:  # noqa: BLE001 - the helpers' answers are read first, then raised
                error = exc
        for k in remote:
            try:
                results[k] = servers[k].result()
            except BaseException as exc:  # noqa: BLE001
                error = error or exc
        if error is not None:  # nothing committed anywhere
            servers[0].abort()
            for k in results:
                if k:
                    servers[k].send("abort")
                    servers[k].result()
            raise error
        for k in remote:
            servers[k].send("commit")
        try:
            servers[0].commit()
        finally:  # every helper's answer is read, whatever happened here
            for k in remote:
                try:
                    servers[k].result()
                except RuntimeError as exc:
                    raise RuntimeError(
                        f"{self.files[k]}: its helper ended while committing: that shard may or may not hold this "
                        "batch (the others do); re-send the same batch: the shards that hold it skip their part"
                    ) from exc
        return results

    def _close_helpers(self) -> None:
        for s in self._servers[1:]:
            if s is not None:
                s.close()
        self._servers.clear()

    def close(self) -> None:
        self._close_helpers()
        self.local.close()
