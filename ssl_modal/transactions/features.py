"""Fraud / anomaly features per transaction and embeddings per client, from a trained model + a raw table.

`features(model, table)` returns one row per input row (same order), joined back by transaction id:

- surprise_<field>: -log p(observed value) when the event is hidden (every categorical target of the
  masked-attribute head: surprise_mcc, surprise_amount_bin, calendar and extra fields); surprise_total sums them.
  For the default 1-layer unidirectional GRU this is exact and costs one extra GRU cell step per event
  (`hidden_event_states`); for other encoders, `passes` interleaved masking patterns: pass j hides the events at
  positions p with p % passes == j, so each event is hidden once and a window costs passes + 1 encoder runs.
- order_score: the order-verification head's probability that the event's window is out of order.
- gap_residual: observed minus predicted (transformed) time gap from the previous event.
- history_distance: 1 - cosine(event token, mean of the earlier tokens of its window); NaN for the first.
- with the history objective (`history.py`): state_00 ... (low-dimensional causal state before the event),
  per lag L amount_z_l<L> / gap_z_l<L> (signed residuals in standard deviations of the predicted amount and time
  gap given the state L events back and the event's other fields), amount_nll_l<L> / gap_nll_l<L> /
  event_nll_l<L>, and `anomaly_score` (the per-event label-free score, see `anomaly_score`) with
  `anomaly_score_24h`, its mean over the client's events in the 24 hours up to and including the event (the
  documented label-free score for burst fraud, see `windowed_mean`).
- position / window_events: where the event sits in its window, and the window's length: only with
  `windowing=True` (they describe the windowing, not the client, and drift between periods).
Rows the preprocessing dropped (see its report) keep NaN features and scored=False; the counts and reasons
are in `result.attrs["report"]` and logged.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import torch

from ssl_modal.core.contract import SSLModel, move_to
from ssl_modal.transactions.client_pooling import CLIENT_POOLING, client_vectors
from ssl_modal.transactions.losses import hide_fields
from ssl_modal.transactions.objectives import MASK_ID
from ssl_modal.transactions.parsing import hours_per_unit

log = logging.getLogger("ssl_modal")
TRANSACTION_ID, CLIENT_ID, EVENT_TIME = "transaction_id", "client_id", "event_time"
ANOMALY_WINDOW_HOURS = 24.0  # anomaly_score_24h; chosen among 1-96 h on the pretraining clients (docs/transactions.md)


def _preprocessor(model: SSLModel):
    pre = getattr(model, "preprocessor", None)
    if pre is None:
        raise ValueError(
            "this model carries no fitted preprocessor (it was built from 'fields'); "
            "train it with a recipe or build it with transactions_model_config(...)"
        )
    return pre


def _read(table) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    from ssl_modal.data.readers import read_table

    return read_table(table)


def _input_ids(frame: pd.DataFrame, pre) -> np.ndarray:
    column = pre.config.columns.transaction_id
    if column is None:
        return np.arange(len(frame))
    if column not in frame.columns:  # the preprocessor raises the full message; keep the same contract here
        return np.arange(len(frame))
    return frame[column].to_numpy()


def window_lengths(sequences) -> np.ndarray:
    return pc.list_value_length(sequences.table.column(TRANSACTION_ID)).to_numpy(zero_copy_only=False).astype(np.int64)


def _batches(sequences, batch_size: int, progress: bool, desc: str):
    lengths = window_lengths(sequences)
    order = np.argsort(-lengths, kind="stable")  # similar lengths together: less padding
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=(len(order) + batch_size - 1) // batch_size, desc=desc, unit="batch")
    for s in starts:
        yield order[s : s + batch_size]


def hidden_event_states(encoder, batch: dict, tokens: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, H) states of a 1-layer unidirectional GRU encoder at every position t as if event t alone
    were hidden: one GRU cell step from the clean state at t-1 with the "hidden event" input vector.
    For a causal encoder this equals masking event t and re-running the window (later events cannot
    matter), at the cost of one parallel cell step instead of one pass per event."""
    everything = {k: batch["mask"].bool() for k in batch["cat"]}
    x = encoder.embed(hide_fields(batch, everything, {k: batch["mask"].bool() for k in batch["num"]}, MASK_ID))
    rnn = encoder.rnn
    first = tokens.new_zeros(tokens.shape[0], 1, tokens.shape[2]) if h0 is None else h0[:, None].to(tokens.dtype)
    h_prev = torch.cat([first, tokens[:, :-1]], dim=1)  # h0: the GRU state before the first event (incremental)
    gi = torch.nn.functional.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0)
    gh = torch.nn.functional.linear(h_prev, rnn.weight_hh_l0, rnn.bias_hh_l0)
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h_prev


@torch.no_grad()
def window_features(
    model: SSLModel, sequences, *, batch_size: int = 128, passes: int = 5, progress: bool = False, method: str = "auto"
) -> pd.DataFrame:
    """Feature columns for every event of a SequenceSet, windows in order, events in window order.
    method "auto": exact per-event surprises for a 1-layer unidirectional GRU (see hidden_event_states),
    `passes` interleaved masking patterns otherwise; "interleaved": always the patterns."""
    if passes < 1:
        raise ValueError(f"passes: expected >= 1, found {passes}")
    model.eval()
    encoder = model.encoder
    device = next(model.parameters()).device
    masked = model.objectives["masked"] if "masked" in model.objectives else None
    forecaster = model.objectives["history"] if "history" in model.objectives else None
    order = model.objectives["order"] if "order" in model.objectives else None
    c = encoder.config
    exact_gru = method == "auto" and c.kind == "gru" and not c.bidirectional and c.num_layers == 1
    if method not in ("auto", "interleaved"):
        raise ValueError(f"method: expected 'auto' or 'interleaved', found '{method}'")
    lengths = window_lengths(sequences)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = int(offsets[-1])
    cols: dict[str, np.ndarray] = {}

    def column(name: str) -> np.ndarray:
        if name not in cols:
            cols[name] = np.full(n, np.nan, dtype=np.float32)
        return cols[name]

    for rows in _batches(sequences, batch_size, progress, "features"):
        batch = move_to(model.collate([sequences[int(i)] for i in rows]), device)
        mask = batch["mask"].bool()
        B, T = mask.shape
        flat = torch.as_tensor(offsets[rows], device=device)[:, None] + torch.arange(T, device=device)[None]
        where = flat[mask].cpu().numpy()

        def put(name: str, values: torch.Tensor, where=where, mask=mask) -> None:
            column(name)[where] = values[mask].float().cpu().numpy()

        out = encoder(batch)
        pos = torch.arange(T, device=device)[None].expand(B, T)
        put("position", pos)
        put("window_events", mask.sum(1, keepdim=True).expand(B, T))
        tokens = out.tokens.float()
        history = (tokens.cumsum(1) - tokens) / pos.clamp(min=1)[..., None]
        dist = 1 - torch.nn.functional.cosine_similarity(tokens, history, dim=-1)
        put("history_distance", dist.masked_fill(pos == 0, float("nan")))
        if order is not None:
            put("order_score", torch.sigmoid(order.window_logits(out.pooled)).unsqueeze(1).expand(B, T))
            if order.use_gap:
                pred = order.gap_predictions(encoder, out)
                resid = torch.full((B, T), float("nan"), device=device)
                resid[:, 1:] = batch["num"]["time_gap"][:, 1:] - pred[:, :-1]
                put("gap_residual", resid)
        if forecaster is not None:
            for name, values in forecaster.event_features(encoder, batch, out).items():
                put(name, values)
        if masked is not None:
            surprise = {t: torch.zeros(B, T, device=device) for t in masked.targets}
            if exact_gru:  # one GRU cell step per event from the clean states: exact "this event hidden"
                hidden_tokens = hidden_event_states(encoder, batch, out.tokens)
                for t, logits in masked.logits(hidden_tokens[mask]).items():
                    nll = -torch.log_softmax(logits.float(), -1).gather(1, batch["cat"][t][mask][:, None])[:, 0]
                    surprise[t][mask] = nll
            for j in range(0 if exact_gru else passes):
                hide = mask & (pos % passes == j)
                if not hide.any():
                    continue
                hidden = encoder(
                    hide_fields(batch, {k: hide for k in batch["cat"]}, {k: hide for k in batch["num"]}, MASK_ID)
                )
                for t, logits in masked.logits(hidden.tokens[hide]).items():
                    nll = -torch.log_softmax(logits.float(), -1).gather(1, batch["cat"][t][hide][:, None])[:, 0]
                    surprise[t][hide] = nll
            for t, values in surprise.items():
                put(f"surprise_{t}", values)
            put("surprise_total", torch.stack(list(surprise.values())).sum(0))
    return pd.DataFrame(cols)


def features(
    model: SSLModel,
    table,
    *,
    batch_size: int = 128,
    passes: int = 5,
    progress: bool = True,
    method: str = "auto",
    windowing: bool = False,
    sequences=None,
) -> pd.DataFrame:
    """One row per row of `table` (DataFrame or CSV/Parquet path), in input order, with its transaction
    id and client id (named and typed as in the input: e.g. `trans_num`; "transaction_id" = the 0-based row
    when no id column is mapped), `scored` and the feature columns described in the module docstring
    (`windowing=True` adds `position` and `window_events`). `sequences`: `table` already transformed by this
    model's preprocessor (`model.preprocessor.transform(table)`), e.g. shared by a model and its random-init
    twin (`random_init` keeps the preprocessor); None: transformed here."""
    pre = _preprocessor(model)
    frame = _read(table)
    sequences = pre.transform(frame) if sequences is None else sequences
    feats = window_features(model, sequences, batch_size=batch_size, passes=passes, progress=progress, method=method)

    def flat(name: str) -> np.ndarray:
        return sequences.table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)

    tx = flat(TRANSACTION_ID)
    clients = np.repeat(
        np.asarray(sequences.table.column(CLIENT_ID).to_pylist(), dtype=object), window_lengths(sequences)
    )
    feats.insert(0, CLIENT_ID, clients)
    feats.insert(0, TRANSACTION_ID, tx)
    feats[EVENT_TIME] = flat(EVENT_TIME).astype(np.float64)  # as the preprocessor parsed it: seconds or days
    # overlapping windows: keep each transaction's occurrence with the most history before it
    feats = feats.sort_values("position", ascending=False, kind="stable").drop_duplicates(TRANSACTION_ID)
    if not windowing:
        feats = feats.drop(columns=["position", "window_events"])
    if any(c.startswith("event_nll_l") for c in feats.columns):
        feats["anomaly_score"] = anomaly_score(feats)
    ids = _input_ids(frame, pre)
    key_in, key_feat = pd.Index(ids), pd.Index(feats[TRANSACTION_ID].to_numpy())
    if key_in.dtype != key_feat.dtype:
        key_in, key_feat = key_in.astype(str), key_feat.astype(str)
    if not key_feat.is_unique or not key_in.is_unique:
        raise ValueError("features: transaction ids are not unique; the preprocessor should have refused them")
    located = key_feat.get_indexer(key_in)
    result = feats.iloc[np.maximum(located, 0)].reset_index(drop=True)
    result[TRANSACTION_ID] = ids
    scored = located >= 0
    result.loc[~scored, result.columns[1:]] = np.nan
    result.insert(2, "scored", scored)
    cols = pre.config.columns  # the keys keep the input's column names and dtypes, so a merge back matches
    result[CLIENT_ID] = frame[cols.client_id].to_numpy()
    times = result.pop(EVENT_TIME).to_numpy()
    if "anomaly_score" in result:  # over the scored rows (the others have no score and keep NaN)
        hours = times * hours_per_unit(pre.state_dict()["time_kind"])
        score = result["anomaly_score"].to_numpy(dtype=np.float64)
        day = np.full(len(result), np.nan)
        clients = result[CLIENT_ID].to_numpy()[scored]
        day[scored] = windowed_mean(score[scored], clients, hours[scored], ANOMALY_WINDOW_HOURS)
        result["anomaly_score_24h"] = day.astype(np.float32)
    result = result.rename(columns={TRANSACTION_ID: cols.transaction_id or TRANSACTION_ID, CLIENT_ID: cols.client_id})
    report = dict(getattr(sequences, "report", {}) or {})
    report["rows_scored"], report["rows_not_scored"] = int(scored.sum()), int((~scored).sum())
    result.attrs["report"] = report
    if (~scored).any():
        log.warning(
            "features: %d of %d rows were not scored (dropped by preprocessing: %s); they keep NaN features",
            int((~scored).sum()),
            len(result),
            report.get("rows_dropped"),
        )
    return result


def anomaly_score(feats: pd.DataFrame) -> np.ndarray:
    """The label-free anomaly score per transaction (higher = more anomalous): `event_nll_l<L>` at the longest
    lag L, the negative log-likelihood of the event's amount and time gap (and any categorical targets of the
    history objective) given the client's history
    without its L-1 most recent events and the event's other fields (see docs/transactions.md)."""
    lags = sorted(int(c[len("event_nll_l") :]) for c in feats.columns if c.startswith("event_nll_l"))
    return feats[f"event_nll_l{lags[-1]}"].to_numpy(dtype=np.float32)


def windowed_mean(scores: np.ndarray, clients: np.ndarray, hours: np.ndarray, window_hours: float) -> np.ndarray:
    """Per row: the mean of `scores` over the rows of the same client whose time lies in [t - window_hours, t]
    (the row itself and same-time rows included, later rows never: causal), NaN scores skipped; NaN where
    the row's own score is NaN. Fraud comes in bursts (Sparkov: 2-19 events within 1-2 days), so a day's mean
    of the per-event `anomaly_score` ranks every event of a burst by the whole burst's unlikelihood."""
    if window_hours < 0:
        raise ValueError(f"window_hours: expected >= 0, found {window_hours}")
    scores = np.asarray(scores, dtype=np.float64)
    hours = np.asarray(hours, dtype=np.float64)
    codes = pd.factorize(pd.Series(clients), use_na_sentinel=False)[0]
    order = np.lexsort((hours, codes))
    t = hours[order] - np.nanmin(hours) if len(hours) else hours
    key = codes[order] * (float(np.nanmax(t, initial=0.0)) + window_hours + 1.0) + t  # clients never overlap
    valid = np.isfinite(scores[order])
    total = np.concatenate([[0.0], np.cumsum(np.where(valid, scores[order], 0.0))])
    count = np.concatenate([[0], np.cumsum(valid)])
    start = np.searchsorted(key, key - window_hours, side="left")
    end = np.searchsorted(key, key, side="right")
    n = count[end] - count[start]
    mean = np.divide(total[end] - total[start], n, out=np.full(len(n), np.nan), where=n > 0)
    out = np.empty_like(mean)
    out[order] = np.where(valid, mean, np.nan)
    return out


def client_embeddings(
    model: SSLModel, table, *, batch_size: int = 128, progress: bool = False, pooling=None
) -> pd.DataFrame:
    """One row per client: client_id, windows, events, emb_000 ... (the `pooling` blocks concatenated, see
    `client_pooling`: "last" = mean of its windows' pooled vectors; "mean" / "max" / "std" of the per-event
    states and "field_mean" of the input vectors over every event of its history).
    `pooling=None`: the pooling the model was trained to export (its run's `eval.client_pooling`), else
    `CLIENT_POOLING`. From a raw table, client_id keeps the input column's dtype (integers stay integers)."""
    pre = _preprocessor(model)
    if pooling is None:
        spec = getattr(model, "spec", None)
        pooling = (spec.config if spec is not None else {}).get("client_pooling", CLIENT_POOLING)
    raw = None if hasattr(table, "table") and hasattr(table, "report") else _read(table)
    sequences = table if raw is None else pre.transform(raw)
    out = client_vectors(model, sequences, pooling, batch_size=batch_size, progress=progress).reset_index()
    if raw is not None:
        from ssl_modal.transactions.parsing import as_text

        values = pd.Series(raw[pre.config.columns.client_id].dropna().unique())
        out[CLIENT_ID] = out[CLIENT_ID].map(dict(zip(as_text(values), values, strict=True))).astype(values.dtype)
    return out
