"""`EventMath`: the per-event features of a causal 1-layer GRU transactions model in numpy, for incremental scoring.

A scoring call touches a few events, so the per-operation cost of torch modules (5-25 us per op on this
project's CPUs, several hundred ops per event) would dominate; numpy costs 1-4 us per op. On large arrays the
sigmoid and GELU go through torch's kernels (on numpy memory), several times faster than scipy's. The
weights are copied once (float32) from the model's own modules and the math is theirs, step for step:
`FieldEmbedding` (concat or sum), the GRU cell (torch's gate order r, z, n), `hidden_event_states` (one cell
step from the previous state with every field hidden), `OrderVerification.gap_head`, `MaskedAttribute` heads
and `HistoryForecast.heads` / `event_features`. tests/transactions/test_incremental.py pins the result to
`features()` (torch) within 1e-5. Events are flat (N, ...) arrays, clients stepped in lockstep through the GRU.
"""

from __future__ import annotations

from operator import attrgetter

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import erf, expit

from ssl_modal.transactions.history import AMOUNT, LOGVAR_RANGE, TIME_GAP
from ssl_modal.transactions.objectives import MASK_ID

_VERSION = attrgetter("_version")


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _linear(module) -> tuple[np.ndarray, np.ndarray | None]:
    return _np(module.weight).T.copy(), None if module.bias is None else _np(module.bias)


SMALL = 4096  # elements: below, scipy's ufuncs (1-3 us a call); above, torch's vectorised kernels (5-10x faster)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as nn.GELU()."""
    if x.size < SMALL:
        return x * 0.5 * (1.0 + erf(x * 0.7071067811865476))
    return F.gelu(torch.from_numpy(x)).numpy()


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    if x.size < SMALL:
        return expit(x, out=x)
    torch.sigmoid_(torch.from_numpy(x))
    return x


def _tanh_(x: np.ndarray) -> np.ndarray:
    """tanh(x) = 2 sigmoid(2x) - 1 in place (float32 tanh is several times slower here; error below 1e-7)."""
    x *= 2
    _sigmoid_(x)
    x *= 2
    x -= 1
    return x


def _log_softmax_at(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """log p(ids) under softmax(logits) over the last axis: logits (N, V), ids (N,)."""
    top = logits.max(-1)
    z = np.log(np.exp(logits - top[:, None]).sum(-1)) + top
    return logits[np.arange(len(ids)), ids] - z


def _stacked(heads: list) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """[(key, (W, b or None))] -> (W side by side, biases (0 for none), key -> column slice)."""
    if not heads:
        return None
    ends = np.cumsum([w.shape[1] for _, (w, _) in heads]).tolist()
    cols = {k: slice(a, b) for (k, _), a, b in zip(heads, [0, *ends[:-1]], ends, strict=True)}
    bias = [np.zeros(w.shape[1], np.float32) if b is None else b for _, (w, b) in heads]
    return np.concatenate([w for _, (w, _) in heads], 1), np.concatenate(bias), cols


def _nll_segments(logits: np.ndarray, segments: list, ids: list) -> np.ndarray:
    """(N, T) -log softmax(logits[:, segment t])[ids[t]] for T column segments (a, b) of logits (N, V): one
    max, exp and sum over all segments instead of one set per target."""
    starts = [a for a, _ in segments]
    top = np.maximum.reduceat(logits, starts, axis=1)
    shifted = logits - np.repeat(top, [b - a for a, b in segments], axis=1)
    if shifted.size < SMALL:
        np.exp(shifted, out=shifted)
    else:
        torch.exp_(torch.from_numpy(shifted))
    z = np.log(np.add.reduceat(shifted, starts, axis=1)) + top
    picked = logits[np.arange(len(logits))[:, None], np.asarray(starts)[None, :] + np.stack(ids, 1)]
    return z - picked


def state_width(model) -> int:
    """Floats per client: the GRU state, the running sum of states and, per history lag L >= 2, the last L
    states projected by that lag's residual head (its first layer's state part: hidden, not H, floats each)."""
    H = model.encoder.config.hidden
    if "history" not in model.objectives:
        return 2 * H
    hist = model.objectives["history"]
    return 2 * H + sum(lag * hist.config.hidden for lag in hist.config.lags if lag >= 2)


class EventMath:
    def __init__(self, model):
        enc, obj = model.encoder, model.objectives
        emb, rnn = enc.embed, enc.rnn
        self.params = list(model.parameters())
        self.version = self.current_version()
        self.cat_fields, self.num_fields, self.combine = emb.cat_fields, emb.num_fields, emb.combine
        self.tables = {n: _np(e.weight) for n, e in zip(emb.cat_fields, emb.embeddings, strict=True)}
        self.numeric = _linear(emb.numeric) if emb.numeric is not None else None
        self.projections = [_np(p.weight).T.copy() for p in emb.projections] if self.combine == "sum" else None
        self.w_ih, self.b_ih = _np(rnn.weight_ih_l0).T.copy(), _np(rnn.bias_ih_l0)
        self.w_hh, self.b_hh = _np(rnn.weight_hh_l0).T.copy(), _np(rnn.bias_hh_l0)
        self.H = rnn.hidden_size
        everything = {n: np.full(1, MASK_ID) for n in self.cat_fields}
        hidden_num = {n: np.zeros(1, np.float32) for n in self.num_fields}
        flags = {n: np.ones(1, bool) for n in self.num_fields}
        self.g_hidden = (self.embed(everything, hidden_num, flags) @ self.w_ih + self.b_ih)[0]  # (3H,)
        order = obj["order"] if "order" in obj else None
        self.gap_head = _linear(order.gap_head) if order is not None and order.use_gap else None
        masked = obj["masked"] if "masked" in obj else None
        self.targets = list(masked.targets) if masked is not None else []
        if masked is not None:  # the target heads as one matrix: one product, split per target
            heads = [_linear(h) for h in masked.heads]
            self.masked = (np.concatenate([w for w, _ in heads], 1), np.concatenate([b for _, b in heads]))
            ends = np.cumsum([w.shape[1] for w, _ in heads]).tolist()
            self.masked_split = list(zip([0, *ends[:-1]], ends, strict=True))  # column range per target
        hist = obj["history"] if "history" in obj else None
        self.history, self.lags, self.residual = hist is not None, [], []
        if hist is not None:
            self.lags, self.cat_targets, self.vocab = list(hist.config.lags), hist.cat_targets, hist.vocab
            self.hidden_cats, self.hist_num = hist.hidden_cats, hist.num_fields
            self.bottleneck = _linear(hist.bottleneck)
            # first layer split: the lagged state's part (projected once per event, kept in the state) + the event's
            self.residual = [
                (w1[: self.H], w1[self.H :], b1, *_linear(h[2])) for h in hist.residual for w1, b1 in [_linear(h[0])]
            ]
        self.width = state_width(model)
        # products sharing an input, as one matrix each: the previous state's (gap head, bottleneck, lag-1 head)
        # and the hidden event's (every lag's head)
        heads = [("gap", self.gap_head)] if self.gap_head is not None else []
        if hist is not None:
            heads.append(("bottleneck", self.bottleneck))
            heads += [("lag1", (r[0], None)) for lag, r in zip(self.lags, self.residual, strict=True) if lag == 1]
        self.prev_heads = _stacked(heads)
        self.event_heads = _stacked([(lag, (r[1], r[2])) for lag, r in zip(self.lags, self.residual, strict=True)])

    def current_version(self) -> int:
        """Changes whenever a parameter is modified in place (an optimizer step, load_state_dict)."""
        return sum(map(_VERSION, self.params))

    # ---- model pieces -------------------------------------------------------------------------------
    def embed(self, cat: dict, num: dict, flags: dict | None = None) -> np.ndarray:
        """FieldEmbedding: (..., D) from ids (...,) per categorical field and values (...,) per numeric one."""
        parts = [self.tables[n][cat[n]] for n in self.cat_fields]
        if self.numeric is not None:
            flags, k = flags or {}, len(self.num_fields)
            stacked = np.zeros((len(num[self.num_fields[0]]), 2 * k), np.float32)  # values, then hidden flags
            for i, n in enumerate(self.num_fields):
                stacked[:, i] = num[n]
                if n in flags:
                    stacked[:, k + i] = flags[n]
            w, b = self.numeric
            parts.append(stacked @ w + b)
        if self.combine == "sum":
            return sum(p @ w for p, w in zip(parts, self.projections, strict=True))
        return np.concatenate(parts, -1)

    def gru(self, x: np.ndarray, h0: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> dict:
        """Per event (N, H): "tokens" the GRU state after it, from h0 (B, H); "hidden" the state as if it alone
        were hidden (`hidden_event_states`, from the same W_hh h product); "prev" the state before it;
        "before" the sum of the client's tokens before it in this call; and "h", "sum" (B, H): the last state
        and the sum of the tokens per client. Events are (N, D) inputs, client b's at starts[b] ... in time
        order; clients in decreasing `lengths`. Steps run time-major: step t's events (the first k_t clients')
        are one contiguous block, so each step reads and writes slices; one permutation back at the end."""
        H, B, N = self.H, len(h0), len(x)
        steps = int(lengths[0]) if B else 0
        if N == B:  # one event per client: already time-major
            order, offsets = None, [0, N]
        else:
            k = np.count_nonzero(lengths[None, :] > np.arange(steps)[:, None], axis=1)  # clients at each step
            offsets = np.concatenate([[0], np.cumsum(k)]).tolist()
            t_of = np.repeat(np.arange(steps), k)
            order = starts[np.arange(N) - np.repeat(offsets[:-1], k)] + t_of  # time-major row -> event row
        gi = (x if order is None else x[order]) @ self.w_ih
        gi += self.b_ih
        tokens, hidden, prev, before = (np.empty((N, H), np.float32) for _ in range(4))
        gh, rz, n = (
            np.empty((B, 3 * H), np.float32),
            np.empty((2, B, 2 * H), np.float32),
            np.empty((2, B, H), np.float32),
        )
        h, acc = h0.copy(), np.zeros((B, H), np.float32)
        g_rz, g_n = self.g_hidden[: 2 * H], self.g_hidden[2 * H :]
        for t in range(steps):  # in place: no temporaries per step
            a, b = offsets[t], offsets[t + 1]
            c = b - a
            hc, ghc, rzc, nc, tok, hid = h[:c], gh[:c], rz[:, :c], n[:, :c], tokens[a:b], hidden[a:b]
            prev[a:b], before[a:b] = hc, acc[:c]
            np.matmul(hc, self.w_hh, out=ghc)
            ghc += self.b_hh
            np.add(gi[a:b, : 2 * H], ghc[:, : 2 * H], out=rzc[0])
            np.add(g_rz, ghc[:, : 2 * H], out=rzc[1])
            _sigmoid_(rzc)
            np.multiply(rzc[..., :H], ghc[:, 2 * H :], out=nc)
            nc[0] += gi[a:b, 2 * H :]
            nc[1] += g_n
            _tanh_(nc)
            for new, j in ((tok, 0), (hid, 1)):  # (1 - z) n + z h
                np.subtract(hc, nc[j], out=new)
                new *= rzc[j, :, H:]
                new += nc[j]
            hc[...] = tok
            acc[:c] += tok
        if order is None:
            return {"tokens": tokens, "hidden": hidden, "prev": prev, "before": before, "h": h, "sum": acc}
        back = np.empty(N, np.int64)
        back[order] = np.arange(N)
        return {
            "tokens": tokens[back],
            "hidden": hidden[back],
            "prev": prev[back],
            "before": before[back],
            "h": h,
            "sum": acc,
        }

    @staticmethod
    def _dense(x: np.ndarray, wb) -> np.ndarray:
        w, b = wb
        return x @ w if b is None else x @ w + b

    # ---- features ---------------------------------------------------------------------------------
    def _split(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """(h (B, H), sum of states (B, H), {lag: (B, lag, hidden) projected last states}) views of (B, width)."""
        H, at, rings = self.H, 2 * self.H, {}
        for lag, (w1h, *_) in zip(self.lags, self.residual, strict=True):
            if lag >= 2:
                p = w1h.shape[1]
                rings[lag] = state[:, at : at + lag * p].reshape(len(state), lag, p)
                at += lag * p
        return state[:, :H], state[:, H : 2 * H], rings

    def features(self, cat: dict, num: dict, lengths: np.ndarray, state: np.ndarray, count: np.ndarray):
        """Feature arrays (N,) by name (the order of `features`) and the clients' new states (B, width), for N
        events of B clients: cat/num (N,) per field (num with "time_gap"), each client's events together and
        in time order, clients by decreasing `lengths` (B,); state (B, width) after their earlier events
        (zeros: none, see `state_width`), count (B,) their number of earlier events."""
        B, H = len(lengths), self.H
        h0, tsum, rings = self._split(state)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        client = np.repeat(np.arange(B), lengths)
        at = np.arange(len(client))
        step = at - starts[client]
        first = (count[client] == 0) & (step == 0)
        g = self.gru(self.embed(cat, num), h0, starts, lengths)
        tokens, prev = g["tokens"], g["prev"]
        out = {}
        pos = (count[client] + step).astype(np.float32)
        history = (tsum[client] + g["before"]) / np.maximum(pos, 1)[:, None]
        dot = (tokens * history).sum(-1)
        norms = np.maximum(np.linalg.norm(tokens, axis=-1), 1e-8) * np.maximum(np.linalg.norm(history, axis=-1), 1e-8)
        out["history_distance"] = np.where(pos == 0, np.nan, 1 - dot / norms).astype(np.float32)
        gap = num[TIME_GAP]
        proj = None
        if self.prev_heads is not None:
            w, b, cols = self.prev_heads
            both = prev @ w
            both += b
            proj = {k: both[:, c] for k, c in cols.items()}
        if self.gap_head is not None:
            out["gap_residual"] = np.where(first, np.nan, gap - proj["gap"][:, 0])
        new = np.empty_like(state)
        new[:, :H], new[:, H : 2 * H] = g["h"], tsum + g["sum"]
        if self.history:
            out.update(self._history(cat, num, proj, tokens, rings, first, client, step, lengths, starts, new))
        if self.targets:
            nll = _nll_segments(
                self._dense(g["hidden"], self.masked), self.masked_split, [cat[t] for t in self.targets]
            )
            total = np.zeros(len(step), np.float32)
            for j, t in enumerate(self.targets):
                out[f"surprise_{t}"] = nll[:, j]
                total = total + nll[:, j]
            out["surprise_total"] = total
        return out, new

    def _history(self, cat, num, proj, tokens, rings, first, client, step, lengths, starts, new) -> dict:
        """`HistoryForecast.event_features` (the lagged states from the previous state's projections `proj`, the
        tokens and the projected rings); writes each lag's new ring into `new`."""
        out = {}
        before = proj["bottleneck"]
        out.update({f"state_{i:02d}": before[:, i] for i in range(before.shape[-1])})
        hid_cat = {n: np.full_like(v, MASK_ID) if n in self.hidden_cats else v for n, v in cat.items()}
        hid_num = {n: np.zeros_like(v) if n in self.hist_num else v for n, v in num.items()}
        flags = {n: np.ones(v.shape, bool) for n, v in num.items() if n in self.hist_num}
        w, b, cols = self.event_heads
        event = self.embed(hid_cat, hid_num, flags) @ w + b
        amount, gap = num[AMOUNT], num[TIME_GAP]
        lo, hi = LOGVAR_RANGE
        B, N, at = len(lengths), len(step), 2 * self.H
        for lag, (w1h, _, _, w2, b2) in zip(self.lags, self.residual, strict=True):
            if lag == 1:
                lagged = proj["lag1"]
            else:  # [ring (B * lag) ; projected tokens (N)], the state `lag` events back of each event
                p = w1h.shape[1]
                full = np.concatenate([rings[lag].reshape(B * lag, p), tokens @ w1h])
                lagged = full[np.where(step >= lag, B * lag + np.arange(N) - lag, client * lag + step)]
                k = lengths[:, None] + np.arange(lag)[None]  # the last `lag` of [ring ; new]: positions n .. n+lag-1
                b = np.arange(B)[:, None]
                keep = full[np.where(k < lag, b * lag + k, B * lag + starts[:, None] + k - lag)]
                new[:, at : at + lag * p] = keep.reshape(B, -1)
                at += lag * p
            a = lagged + event[:, cols[lag]]
            r = self._dense(_gelu(a), (w2, b2))
            lv_a, lv_g = np.minimum(np.maximum(r[:, 1], lo), hi), np.minimum(np.maximum(r[:, 3], lo), hi)
            out[f"amount_z_l{lag}"] = (amount - r[:, 0]) * np.exp(-0.5 * lv_a)
            out[f"amount_nll_l{lag}"] = 0.5 * (lv_a + (amount - r[:, 0]) ** 2 * np.exp(-lv_a))
            out[f"gap_z_l{lag}"] = np.where(first, np.nan, (gap - r[:, 2]) * np.exp(-0.5 * lv_g))
            gap_nll = 0.5 * (lv_g + (gap - r[:, 2]) ** 2 * np.exp(-lv_g))
            out[f"gap_nll_l{lag}"] = np.where(first, np.nan, gap_nll)
            total = out[f"amount_nll_l{lag}"] + np.where(first, 0.0, gap_nll)
            ends = np.cumsum([4, *self.vocab]).tolist()
            logits = [r[:, a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)]
            for name, lg in zip(self.cat_targets, logits, strict=True):
                out[f"{name}_nll_l{lag}"] = nll = -_log_softmax_at(lg, cat[name])
                total = total + nll
            out[f"event_nll_l{lag}"] = total
        return out
