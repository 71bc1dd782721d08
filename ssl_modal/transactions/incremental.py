"""Incremental scoring: per-event features of new transactions from a stored per-client state.

    store = StateStore.create("state.sqlite", model)        # or StateStore.open(path, model)
    score_new(model, store, history_table)                  # nightly batch: builds every client's state
    feats = score_new(model, store, new_rows)               # real time: features of the new rows only

The state of a client is what the causal 1-layer GRU needs to continue: its state after the last event, the
states of the last `max lag` events (history objective), the running sum of its states (history_distance),
its event count, the last event's time and the transaction ids seen. It lives in SQLite (stdlib; many
readers, one writer), one row per client, and every `score_new` call commits all its updates in one
transaction: a crash mid-batch leaves the previous state intact. The store records a fingerprint of the
model weights and refuses another model.

Equal to `features(model, whole_table)` (test) for clients whose whole history fits one window of
`max_length` events. `features` restarts the GRU at each window start; the incremental state never does, so
for longer histories the two differ after the first window (the incremental one has more history).
Window-level columns (`order_score`, `position`, `window_events`) are not produced here.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_modal.core.contract import SSLModel, move_to
from ssl_modal.transactions.features import (
    CLIENT_ID,
    TRANSACTION_ID,
    _preprocessor,
    _read,
    anomaly_score,
    hidden_event_states,
    window_lengths,
)

log = logging.getLogger("ssl_modal")
FORMAT = "ssl_modal.transactions.incremental/1"


def model_fingerprint(model: SSLModel) -> str:
    """sha256 over the model's weights (names, shapes and bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _require_causal_gru(model: SSLModel) -> None:
    c = model.encoder.config
    if c.kind != "gru" or c.bidirectional or c.num_layers != 1:
        raise ValueError(
            f"incremental scoring needs the causal 1-layer unidirectional GRU encoder; this model has "
            f"kind={c.kind!r}, bidirectional={c.bidirectional}, num_layers={c.num_layers}"
        )


def _max_lag(model: SSLModel) -> int:
    return max(model.objectives["history"].config.lags) if "history" in model.objectives else 1


class StateStore:
    """Per-client GRU state in SQLite, tied to one model by its weights' fingerprint."""

    def __init__(self, path: str | Path, model: SSLModel, create: bool = False):
        _require_causal_gru(model)
        self.path, self.hidden, self.lags = Path(path), model.encoder.config.hidden, _max_lag(model)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no state store here; create one with StateStore.create(path, model)")
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self.conn.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL: atomic and consistent; a power cut may lose the last batch
        fp = model_fingerprint(model)
        with self.conn:
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS clients (client TEXT PRIMARY KEY, events INTEGER, "
                "last_time REAL, state BLOB)"
            )
            self.conn.execute("CREATE TABLE IF NOT EXISTS seen (tx TEXT PRIMARY KEY)")
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                self.conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("model", fp)])
            elif meta.get("format") != FORMAT:
                raise ValueError(f"{self.path}: state format {meta.get('format')!r}, expected {FORMAT!r}")
            elif meta.get("model") != fp:
                raise ValueError(
                    f"{self.path}: this state was made by another model (weights fingerprint "
                    f"{meta.get('model', '')[:12]}..., this model {fp[:12]}...); build a new state with "
                    "score_new on the client histories"
                )

    @classmethod
    def create(cls, path: str | Path, model: SSLModel) -> StateStore:
        return cls(path, model, create=True)

    @classmethod
    def open(cls, path: str | Path, model: SSLModel) -> StateStore:
        return cls(path, model)

    def clients(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM clients").fetchone()[0])

    def get(self, clients: list[str]) -> dict[str, tuple[int, float, np.ndarray]]:
        out = {}
        for i in range(0, len(clients), 500):
            chunk = clients[i : i + 500]
            rows = self.conn.execute(
                f"SELECT client, events, last_time, state FROM clients WHERE client IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update({c: (n, t, np.frombuffer(b, dtype=np.float32)) for c, n, t, b in rows})
        return out

    def seen(self, ids: list[str]) -> set[str]:
        found = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            found.update(
                r[0]
                for r in self.conn.execute(f"SELECT tx FROM seen WHERE tx IN ({','.join('?' * len(chunk))})", chunk)
            )
        return found

    def commit(self, states: dict[str, tuple[int, float, np.ndarray]], ids: list[str]) -> None:
        """All updates of one batch in one SQLite transaction (all or nothing)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT OR REPLACE INTO clients VALUES (?, ?, ?, ?)",
                [(c, int(n), float(t), s.astype(np.float32).tobytes()) for c, (n, t, s) in states.items()],
            )
            self.conn.executemany("INSERT OR IGNORE INTO seen VALUES (?)", [(i,) for i in ids])

    def close(self) -> None:
        self.conn.close()


def _unpack(state: np.ndarray, hidden: int, lags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(last state (H,), ring of the last `lags` states (lags, H), running sum (H,))."""
    return state[:hidden], state[hidden : hidden * (lags + 1)].reshape(lags, hidden), state[hidden * (lags + 1) :]


@torch.no_grad()
def score_new(model: SSLModel, store: StateStore, table, *, batch_size: int = 256) -> pd.DataFrame:
    """Features of the rows of `table` only (one row per input row, input order), continuing every client
    from its stored state (unknown clients start empty), and the store updated in one transaction.
    Rows older than their client's last stored event are refused (ValueError naming the client);
    transaction ids already in the store are reported in `result.attrs["report"]["duplicate_ids"]`."""
    _require_causal_gru(model)
    model.eval()
    pre, frame = _preprocessor(model), _read(table)
    sequences = pre.transform(frame)
    encoder, H, L = model.encoder, store.hidden, store.lags
    masked = model.objectives["masked"] if "masked" in model.objectives else None
    order = model.objectives["order"] if "order" in model.objectives else None
    forecaster = model.objectives["history"] if "history" in model.objectives else None
    device = next(model.parameters()).device
    tbl = sequences.table
    clients = np.asarray(tbl.column(CLIENT_ID).to_pylist(), dtype=object)
    windows = np.asarray(tbl.column("window").to_pylist())
    lengths = window_lengths(sequences)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    times = tbl.column("event_time").combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    to_hours = 24.0 if pre.state_dict()["time_kind"] == "days" else 1 / 3600.0
    stored = store.get(sorted(set(clients)))
    for c in set(clients):
        if c in stored:
            first_time = times[offsets[np.flatnonzero(clients == c)[0]]]
            if first_time < stored[c][1]:
                raise ValueError(
                    f"score_new: client '{c}' has a new event at {first_time} older than its last "
                    f"stored event ({stored[c][1]}); out-of-order events are refused"
                )
    state = {c: (n, t, *_unpack(s, H, L)) for c, (n, t, s) in stored.items()}
    cols: dict[str, np.ndarray] = {}

    def put(name: str, where: np.ndarray, values: torch.Tensor, mask: torch.Tensor) -> None:
        if name not in cols:
            cols[name] = np.full(int(offsets[-1]), np.nan, dtype=np.float32)
        cols[name][where] = values[mask].float().cpu().numpy()

    for w in np.unique(windows):  # a client's windows in order: round w continues from round w - 1
        rows_w = np.flatnonzero(windows == w)
        for s in range(0, len(rows_w), batch_size):
            rows = rows_w[s : s + batch_size]
            batch = move_to(model.collate([sequences[int(i)] for i in rows]), device)
            mask = batch["mask"].bool()
            B, T = mask.shape
            known = [clients[i] in state for i in rows]
            zero = (0, 0.0, np.zeros(H, np.float32), np.zeros((L, H), np.float32), np.zeros(H, np.float32))
            st = [state.get(clients[i], zero) for i in rows]
            h0 = torch.as_tensor(np.stack([x[2] for x in st]), device=device)
            ring = torch.as_tensor(np.stack([x[3] for x in st]), device=device)
            tsum = torch.as_tensor(np.stack([x[4] for x in st]), device=device)
            count = torch.as_tensor([float(x[0]) for x in st], device=device)
            gap = batch["num"]["time_gap"].clone()
            for b, i in enumerate(rows):
                if known[b]:
                    gap[b, 0] = float(np.log1p(max(times[offsets[i]] - st[b][1], 0.0) * to_hours))
            batch["num"] = {**batch["num"], "time_gap": gap}
            first = torch.zeros_like(mask)
            first[:, 0] = ~torch.as_tensor(known, device=device)
            tokens, _ = encoder.rnn(encoder.embed(batch), h0[None].contiguous())
            tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
            flat = torch.as_tensor(offsets[rows], device=device)[:, None] + torch.arange(T, device=device)[None]
            where = flat[mask].cpu().numpy()
            pos = count[:, None] + torch.arange(T, device=device)[None]
            history = (tsum[:, None] + tokens.cumsum(1) - tokens) / pos.clamp(min=1)[..., None]
            dist = 1 - torch.nn.functional.cosine_similarity(tokens, history, dim=-1)
            put("history_distance", where, dist.masked_fill(pos == 0, float("nan")), mask)
            if order is not None and order.use_gap:
                prev = torch.cat([h0[:, None], tokens[:, :-1]], 1)
                pred = order.gap_head(prev).squeeze(-1)
                put("gap_residual", where, (gap - pred).masked_fill(first, float("nan")), mask)
            if forecaster is not None:
                out = type("Out", (), {"tokens": tokens})()
                for name, values in forecaster.event_features(encoder, batch, out, prefix=ring, first=first).items():
                    put(name, where, values, mask)
            if masked is not None:
                hidden_tokens = hidden_event_states(encoder, batch, tokens, h0)
                total = torch.zeros(B, T, device=device)
                for t, logits in masked.logits(hidden_tokens).items():
                    nll = -torch.log_softmax(logits.float(), -1).gather(-1, batch["cat"][t][..., None])[..., 0]
                    put(f"surprise_{t}", where, nll, mask)
                    total = total + nll
                put("surprise_total", where, total, mask)
            n_real = mask.sum(1)
            for b, i in enumerate(rows):
                n = int(n_real[b])
                seq = torch.cat([ring[b], tokens[b, :n]], 0)[-L:]
                state[clients[i]] = (
                    st[b][0] + n,
                    float(times[offsets[i] + n - 1]),
                    tokens[b, n - 1].cpu().numpy(),
                    seq.cpu().numpy(),
                    (tsum[b] + tokens[b, :n].sum(0)).cpu().numpy(),
                )
    feats = pd.DataFrame(cols)
    tx = tbl.column(TRANSACTION_ID).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    feats.insert(0, CLIENT_ID, np.repeat(clients, lengths))
    feats.insert(0, TRANSACTION_ID, tx)
    if any(c.startswith("event_nll_l") for c in feats.columns):
        feats["anomaly_score"] = anomaly_score(feats)
    ids = [str(i) for i in tx]
    duplicates = sorted(store.seen(ids))
    if duplicates:
        log.warning(
            "score_new: %d transaction id(s) were already in the state (e.g. %s)", len(duplicates), duplicates[:3]
        )
    touched = {c: state[c] for c in set(clients)}
    store.commit({c: (n, t, np.concatenate([h, r.ravel(), s])) for c, (n, t, h, r, s) in touched.items()}, ids)
    column = pre.config.columns.transaction_id
    key = frame[column].to_numpy() if column and column in frame.columns else np.arange(len(frame))
    located = pd.Index(feats[TRANSACTION_ID].astype(str)).get_indexer(pd.Index(key).astype(str))
    result = feats.iloc[np.maximum(located, 0)].reset_index(drop=True)
    result[TRANSACTION_ID] = key
    result.insert(2, "scored", located >= 0)
    if (located < 0).any():
        result.loc[located < 0, result.columns[3:]] = np.nan
    cols = pre.config.columns  # the keys keep the input's column names and dtypes, as in `features`
    result[CLIENT_ID] = frame[cols.client_id].to_numpy()
    result = result.rename(columns={TRANSACTION_ID: cols.transaction_id or TRANSACTION_ID, CLIENT_ID: cols.client_id})
    result.attrs["report"] = {
        **dict(sequences.report or {}),
        "duplicate_ids": duplicates,
        "new_clients": int(sum(c not in stored for c in set(clients))),
    }
    return result
