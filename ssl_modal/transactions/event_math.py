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
    states projected by that lag's residual head (its first layer's state part: hidden, not H, floats each), in a
    circular ring (event number e in slot e % L)."""
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
        # the tokens' products in one matrix: the previous-state heads (read by the next event) and each ring's
        # projection (lags >= 2)
        rings = [(lag, (r[0], None)) for lag, r in zip(self.lags, self.residual, strict=True) if lag >= 2]
        self.token_heads = _stacked(([("prev", (self.prev_heads[0], None))] if self.prev_heads else []) + rings)
        # The GRU's input gates: b_hh's r and z parts added once (its n part is multiplied by r: added per step);
        # the n gate's weights doubled (exact in floating point), so tanh(x) = 2 sigmoid(2x) - 1 needs no x2 pass
        H = self.H
        two = np.concatenate([np.ones(2 * H, np.float32), np.full(H, 2, np.float32)])
        self.w_in = self.w_ih * two
        self.b_in = (self.b_ih + np.concatenate([self.b_hh[: 2 * H], np.zeros(H, np.float32)])) * two
        self.w_hh2, self.b_hn2 = self.w_hh * two, 2 * self.b_hh[2 * H :]
        self.g_rz, self.g_n2 = self.g_hidden[: 2 * H] + self.b_hh[: 2 * H], 2 * self.g_hidden[2 * H :]
        # the hidden event's heads: embedding + product as per-field tables (one gather per field instead of the
        # embedding and a product; hidden fields are constants)
        if self.event_heads is not None:
            self.event_in = self._folded(self.event_heads[0], self.event_heads[1], self.hidden_cats, self.hist_num)

    def __getstate__(self) -> dict:  # to a helper process (math_worker.py): the numpy weights, not the model's
        return {**self.__dict__, "params": []}

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

    def _folded(self, w: np.ndarray, bias: np.ndarray, hidden_cats=(), hidden_nums=()) -> tuple:
        """`embed(...) @ w + bias` as ({field: (V, K) table}, visible numeric fields, their (k, K) rows, bias (K,)):
        hidden fields (categorical: MASK_ID; numeric: value 0 with its hidden flag) are constants in the bias."""
        dims = [self.tables[f].shape[1] for f in self.cat_fields] + ([self.numeric[0].shape[1]] if self.numeric else [])
        if self.combine == "sum":
            maps = [p @ w for p in self.projections]
        else:
            ends = np.cumsum(dims).tolist()
            maps = [w[e - d : e] for d, e in zip(dims, ends, strict=True)]
        tables, bias, nums, rows = {}, bias.astype(np.float32, copy=True), [], None
        for f, m in zip(self.cat_fields, maps, strict=False):
            t = self.tables[f] @ m
            if f in hidden_cats:
                bias += t[MASK_ID]
            else:
                tables[f] = t
        if self.numeric is not None:
            wn, bn = self.numeric
            full, k = wn @ maps[-1], len(self.num_fields)
            bias += bn @ maps[-1]
            for i, n in enumerate(self.num_fields):
                if n in hidden_nums:
                    bias += full[k + i]  # value 0, hidden flag 1
            nums = [n for n in self.num_fields if n not in hidden_nums]
            rows = full[[self.num_fields.index(n) for n in nums]]
        return tables, nums, rows, bias

    @staticmethod
    def _gather_sum(cat: dict, num: dict, folded: tuple, n: int) -> np.ndarray:
        """(n, K): the sum of the folded tables' rows of each event, its numeric values' rows and the bias."""
        tables, nums, rows, bias = folded
        if nums:
            out = np.stack([num[f] for f in nums], 1) @ rows
            out += bias
        else:
            out = np.repeat(bias[None], n, 0)
        rows = np.empty_like(out)  # one buffer for every field's rows
        for f, t in tables.items():
            np.take(t, cat[f], axis=0, out=rows)
            out += rows
        return out

    def gru(self, gi: np.ndarray, h0: np.ndarray, offsets: list, total: np.ndarray):
        """GRU steps over time-major events: gi (N, 3H) their input gates (x `w_in` + `b_in`), step t's events
        rows offsets[t]:offsets[t+1], the first k_t of the B clients of h0 (B, H) (clients by decreasing number
        of events). Returns (2, N, H): [0] the state after each event, [1] the state as if the event alone
        were hidden (`hidden_event_states`, from the same W_hh h product), and before (N, H): `total` (B, H)
        plus the client's states before this event in the call. Each step reads the previous step's block
        (its first k_t rows are the same clients): no state copies; both branches' gates in one pass each."""
        H, N = self.H, len(gi)
        out, before = np.empty((2, N, H), np.float32), np.empty((N, H), np.float32)
        k0 = offsets[1] if N else 0
        gh = np.empty((k0, 3 * H), np.float32)
        rz, n = np.empty((2, k0, 2 * H), np.float32), np.empty((2, k0, H), np.float32)
        b_hn, g_n = self.b_hn2, self.g_n2
        before[:k0] = total[:k0]
        hc = h0[:k0]
        for t in range(len(offsets) - 1):
            a, b = offsets[t], offsets[t + 1]
            c = b - a
            ghc, rzc, nc, new = gh[:c], rz[:, :c], n[:, :c], out[:, a:b]
            if t:
                p = offsets[t - 1]
                hc = out[0, p : p + c]
                np.add(before[p : p + c], hc, out=before[a:b])
            np.matmul(hc, self.w_hh2, out=ghc)
            ghc[:, 2 * H :] += b_hn
            np.add(gi[a:b, : 2 * H], ghc[:, : 2 * H], out=rzc[0])
            np.add(self.g_rz, ghc[:, : 2 * H], out=rzc[1])
            _sigmoid_(rzc)
            np.multiply(rzc[..., :H], ghc[:, 2 * H :], out=nc)
            nc[0] += gi[a:b, 2 * H :]
            nc[1] += g_n
            _sigmoid_(nc)  # tanh(x) = 2 sigmoid(2x) - 1: the n gate's pre-activation is already doubled
            nc *= 2
            nc -= 1
            np.subtract(hc, nc, out=new)  # (1 - z) n + z h, both branches
            new *= rzc[..., H:]
            new += nc
        return out, before

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
        """Features of N events of B clients, computed time-major: (names, values (N, F) float32 in the order of
        `features`, row i for event order[i], the clients' new states (B, width)). cat/num (N,) per field (num
        with "time_gap"), each client's events together and in time order, clients by decreasing `lengths`
        (B,); state (B, width) after their earlier events (zeros: none, see `state_width`), count (B,) their
        number of earlier events."""
        B, H, N = len(lengths), self.H, int(lengths.sum())
        h0, tsum, rings = self._split(state)
        k = np.count_nonzero(lengths[None, :] > np.arange(lengths[0])[:, None], axis=1)  # clients per step
        offsets = np.concatenate([[0], np.cumsum(k)])
        t_of = np.repeat(np.arange(len(k)), k)  # step and client of each time-major row
        j_of = np.arange(N) - offsets[t_of]
        order = np.concatenate([[0], np.cumsum(lengths)[:-1]])[j_of] + t_of  # the event of each row
        if N != B:
            cat, num = {n: v[order] for n, v in cat.items()}, {n: v[order] for n, v in num.items()}
        gi = self.embed(cat, num) @ self.w_in  # (faster than folded tables here: 384 gates wide)
        gi += self.b_in
        both, before = self.gru(gi, h0, offsets.tolist(), tsum)
        tokens = both[0]
        last = offsets[lengths - 1] + np.arange(B)  # each client's last row
        new = np.empty_like(state)
        new[:, :H] = tokens[last]
        np.add(before[last], tokens[last], out=new[:, H : 2 * H])
        pos = count[j_of] + t_of
        first = pos == 0
        out = {}
        history = before / np.maximum(pos, 1).astype(np.float32)[:, None]
        dot = np.einsum("ij,ij->i", tokens, history)
        norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", tokens, tokens)), 1e-8)
        norms *= np.maximum(np.sqrt(np.einsum("ij,ij->i", history, history)), 1e-8)
        out["history_distance"] = np.where(first, np.nan, 1 - dot / norms).astype(np.float32)
        proj, lagged = None, {}
        if self.token_heads is not None:
            w, _, cols = self.token_heads
            tok = tokens @ w  # every event's state, projected for the next event and the rings
            k0 = offsets[1]
            if self.prev_heads is not None:  # the state before each event: h0 at step 0, else the previous row
                wp, bp, pcols = self.prev_heads
                prev = np.empty((N, wp.shape[1]), np.float32)
                prev[:k0] = h0[:k0] @ wp
                prev[k0:] = tok[np.arange(k0, N) - k[t_of[k0:] - 1], cols["prev"]]
                prev += bp
                proj = {name: prev[:, c] for name, c in pcols.items()}
            for lag, ring in rings.items():
                lagged[lag] = self._ring(lag, ring, tok[:, cols[lag]], new, lengths, offsets, t_of, j_of, pos)
        if self.gap_head is not None:
            out["gap_residual"] = np.where(first, np.nan, num[TIME_GAP] - proj["gap"][:, 0])
        if self.history:
            out.update(self._history(cat, num, proj, lagged, first))
        if self.targets:
            logits = both[1] @ self.masked[0]  # the "hidden" states
            logits += self.masked[1]
            nll = _nll_segments(logits, self.masked_split, [cat[t] for t in self.targets])
            total = np.zeros(N, np.float32)
            for j, t in enumerate(self.targets):
                out[f"surprise_{t}"] = nll[:, j]
                total = total + nll[:, j]
            out["surprise_total"] = total
        names = list(out)
        values = np.empty((N, len(names)), np.float32)
        for i, name in enumerate(names):
            values[:, i] = out[name]
        return names, values, order, new

    def _ring(self, lag, ring, tok, new, lengths, offsets, t_of, j_of, pos) -> np.ndarray:
        """The projected state `lag` events back of each (time-major) event, and the clients' new rings written
        into `new`. A ring is circular: a client's event number e (from 0) is kept in slot e % lag, so the state
        `lag` events back of event e is the slot it replaces (zeros before the client's first `lag` events), read
        before the call's events overwrite it; later ones come from `tok` (N, p), the call's projected states.
        pos (N,): each event's number."""
        N, at = len(tok), ring_at(self, lag)
        keep = new[:, at : at + ring[0].size].reshape(ring.shape)  # a view of `new`
        keep[...] = ring
        m0 = offsets[min(lag, len(offsets) - 1)]  # rows of the call's first `lag` steps
        lagged = np.empty_like(tok)
        lagged[:m0] = ring[j_of[:m0], pos[:m0] % lag]
        if m0 < N:
            back = offsets[t_of[m0:]] - offsets[t_of[m0:] - lag]  # rows between an event and its state lag back
            lagged[m0:] = tok[np.arange(m0, N) - back]
        last = np.flatnonzero(t_of >= lengths[j_of] - lag)  # each client's last `lag` events: one per slot
        keep[j_of[last], pos[last] % lag] = tok[last]
        return lagged

    def _history(self, cat, num, proj, lagged, first) -> dict:
        """`HistoryForecast.event_features` from the previous state's projections `proj` and the lagged
        projected states (lags >= 2)."""
        out = {}
        before = proj["bottleneck"]
        out.update({f"state_{i:02d}": before[:, i] for i in range(before.shape[-1])})
        cols = self.event_heads[2]
        event = self._gather_sum(cat, num, self.event_in, len(first))  # the event with its hidden fields
        amount, gap = num[AMOUNT], num[TIME_GAP]
        lo, hi = LOGVAR_RANGE
        ends = np.cumsum([4, *self.vocab]).tolist()
        for lag, (_, _, _, w2, b2) in zip(self.lags, self.residual, strict=True):
            a = event[:, cols[lag]]
            a += proj["lag1"] if lag == 1 else lagged[lag]
            r = self._dense(_gelu(a), (w2, b2))
            lv_a, lv_g = np.minimum(np.maximum(r[:, 1], lo), hi), np.minimum(np.maximum(r[:, 3], lo), hi)
            out[f"amount_z_l{lag}"] = (amount - r[:, 0]) * np.exp(-0.5 * lv_a)
            out[f"amount_nll_l{lag}"] = 0.5 * (lv_a + (amount - r[:, 0]) ** 2 * np.exp(-lv_a))
            out[f"gap_z_l{lag}"] = np.where(first, np.nan, (gap - r[:, 2]) * np.exp(-0.5 * lv_g))
            gap_nll = 0.5 * (lv_g + (gap - r[:, 2]) ** 2 * np.exp(-lv_g))
            out[f"gap_nll_l{lag}"] = np.where(first, np.nan, gap_nll)
            total = out[f"amount_nll_l{lag}"] + np.where(first, 0.0, gap_nll)
            logits = [r[:, a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)]
            for name, lg in zip(self.cat_targets, logits, strict=True):
                out[f"{name}_nll_l{lag}"] = nll = -_log_softmax_at(lg, cat[name])
                total = total + nll
            out[f"event_nll_l{lag}"] = total
        return out

    @staticmethod
    def _dense(x: np.ndarray, wb) -> np.ndarray:
        w, b = wb
        return x @ w if b is None else x @ w + b


def ring_at(math: EventMath, lag: int) -> int:
    """Where `lag`'s ring starts in a client's state (after the GRU state, the sum and the earlier lags' rings)."""
    at = 2 * math.H
    for g, (w1h, *_) in zip(math.lags, math.residual, strict=True):
        if g == lag:
            return at
        at += g * w1h.shape[1] if g >= 2 else 0
    raise KeyError(lag)
