"""History-aware objective: make the causal state carry what velocity features carry, and score each event
against it.

`HistoryForecast` reads the causal (GRU) state h_t after each event t:

- forecast: a `state_dim` bottleneck z_t = W h_t (the low-dimensional state that `features` exports) predicts
  the next event's time gap and amount and log1p(number of events) within each future horizon (hours);
- residual heads, one per `lag` L: from the state h_{t-L} (the history without the L-1 most recent events;
  zeros before the window's start) and event t's own fields with its amount, amount bin, time gap and other
  numeric fields hidden, a Gaussian (mean, log-variance) for event t's amount and its time gap, and a softmax
  over each of `categorical_targets` (default none; e.g. the hour, then hidden from the input too). The feature
  `amount_z_l<L>` = (observed - mean) / std is a signed, history-aware z-score; with a long lag, the second
  event of a burst is still measured against the client's earlier behaviour.

`event_nll_l<L>` = amount NLL + gap NLL (+ the categorical targets' -log p) at lag L: how unlikely the event
is given the client's history without its L-1 most recent events. At the longest lag it is `anomaly_score`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_modal.core.contract import Objective
from ssl_modal.transactions.config import HistoryConfig
from ssl_modal.transactions.encoder import TransactionEncoder
from ssl_modal.transactions.losses import hide_fields

MASK_ID = 1
AMOUNT, AMOUNT_BIN, TIME_GAP = "amount", "amount_bin", "time_gap"
LOGVAR_RANGE = (-6.0, 6.0)


# ---- pure pieces (tested against loops in tests/transactions/test_history.py) ----------------------
def lagged_states(states: Tensor, lag: int) -> Tensor:
    """(B, T, H) -> (B, T, H) where position t holds states[:, t - lag] (zeros when t - lag < 0)."""
    B, T, H = states.shape
    pad = states.new_zeros(B, min(lag, T), H)
    return torch.cat([pad, states[:, : max(T - lag, 0)]], dim=1)


def future_counts(time_gap: Tensor, mask: Tensor, horizons_hours: list) -> tuple[Tensor, Tensor]:
    """Events strictly after t within `h` hours of t, per horizon: (B, T, K) counts and (B, T, K) validity
    (the horizon ends before the window's last event, so the window holds every event it could count).
    `time_gap` is log1p(hours since the previous event), as the preprocessing makes it."""
    hours = torch.expm1(time_gap.float()).clamp(min=0) * mask
    clock = hours.cumsum(1)
    last = clock.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0))
    sorted_clock = clock.masked_fill(~mask, float("inf")).contiguous()
    pos = torch.arange(mask.shape[1], device=mask.device)[None]
    counts, valid = [], []
    for h in horizons_hours:
        end = torch.searchsorted(sorted_clock, (clock + float(h)).contiguous(), right=True)
        counts.append((end - pos - 1).clamp(min=0).float())
        valid.append(mask & (clock + float(h) <= last))
    return torch.stack(counts, -1), torch.stack(valid, -1)


def gaussian_nll(mean: Tensor, logvar: Tensor, target: Tensor) -> Tensor:
    """Elementwise 0.5 * (log var + (target - mean)^2 / var) (the constant dropped)."""
    return 0.5 * (logvar + (target - mean) ** 2 * torch.exp(-logvar))


class HistoryForecast(Objective):
    """Forecast + residual heads on the causal state (see the module docstring). Logs "forecast_loss",
    "residual_loss" and "amount_nll_l<L>" per lag."""

    def __init__(self, encoder: TransactionEncoder, config: HistoryConfig):
        super().__init__()
        if encoder.causal_dim is None:
            raise ValueError(
                "objectives.history needs an encoder whose tokens do not see the future: the default "
                "GRU, or encoder.causal=true for a Transformer"
            )
        for name in (AMOUNT, TIME_GAP):
            if name not in encoder.fields:
                raise ValueError(f"objectives.history needs the numeric field '{name}'; fields: {list(encoder.fields)}")
        self.config = config
        self.num_fields = [n for n, f in encoder.fields.items() if f["kind"] == "numeric"]
        self.cat_targets = [
            n for n in config.categorical_targets if n in encoder.fields and encoder.fields[n]["kind"] == "categorical"
        ]
        self.hidden_cats = [n for n in (AMOUNT_BIN,) if n in encoder.fields] + self.cat_targets
        n_out = 4 + sum(int(encoder.fields[n]["vocab_size"]) for n in self.cat_targets)
        h, k = encoder.causal_dim, len(config.horizons_hours)
        self.bottleneck = nn.Linear(h, config.state_dim)
        self.forecast = nn.Sequential(
            nn.Linear(config.state_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, 2 + k)
        )
        self.residual = nn.ModuleList(
            nn.Sequential(
                nn.Linear(h + encoder.embed.out_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, n_out)
            )
            for _ in config.lags
        )
        self.vocab = [int(encoder.fields[n]["vocab_size"]) for n in self.cat_targets]

    def heads(self, encoder: TransactionEncoder, batch: dict, out, prefix: Tensor | None = None) -> dict[str, Tensor]:
        """Everything the loss and the features read: "state" (B, T, state_dim) z_t, "forecast" (B, T, 2 + K),
        and per lag L "res_l<L>" (B, T, 4) = amount mean, amount log-var, gap mean, gap log-var of event t, and
        "nll_l<L>_<field>" (B, T) = -log p(observed value) of each categorical target. `prefix` (B, max lag, H):
        the causal states of the events before the batch's first (incremental scoring; zeros = no history)."""
        mask = batch["mask"].bool()
        states = encoder.causal_tokens(out).float()
        result = {"state": self.bottleneck(states)}
        result["forecast"] = self.forecast(result["state"])
        event = encoder.embed(
            hide_fields(batch, {n: mask for n in self.hidden_cats}, {n: mask for n in self.num_fields}, MASK_ID)
        ).float()
        full = states if prefix is None else torch.cat([prefix.to(states.dtype), states], 1)
        skip = 0 if prefix is None else prefix.shape[1]
        for lag, head in zip(self.config.lags, self.residual, strict=True):
            r = head(torch.cat([lagged_states(full, lag)[:, skip:], event], -1))
            lo, hi = LOGVAR_RANGE
            result[f"res_l{lag}"] = torch.stack(
                [r[..., 0], r[..., 1].clamp(lo, hi), r[..., 2], r[..., 3].clamp(lo, hi)], -1
            )
            for name, logits in zip(self.cat_targets, r[..., 4:].split(self.vocab, -1), strict=True):
                logp = torch.log_softmax(logits.float(), -1)
                result[f"nll_l{lag}_{name}"] = -logp.gather(-1, batch["cat"][name].unsqueeze(-1)).squeeze(-1)
        return result

    def forward(self, encoder: TransactionEncoder, batch: dict) -> dict[str, Tensor]:
        mask = batch["mask"].bool()
        out = encoder(batch)
        heads = self.heads(encoder, batch, out)
        amount, gap = batch["num"][AMOUNT].float(), batch["num"][TIME_GAP].float()
        fc = heads["forecast"]
        nxt = mask[:, 1:] & mask[:, :-1]
        parts = []
        if nxt.any():
            parts += [
                F.mse_loss(fc[:, :-1, 0][nxt], gap[:, 1:][nxt]),
                F.mse_loss(fc[:, :-1, 1][nxt], amount[:, 1:][nxt]),
            ]
        counts, valid = future_counts(batch["num"][TIME_GAP], mask, self.config.horizons_hours)
        if valid.any():
            parts.append(F.mse_loss(fc[..., 2:][valid], torch.log1p(counts)[valid]))
        forecast = torch.stack(parts).mean() if parts else fc.sum() * 0.0
        result, res = {"forecast_loss": forecast.detach()}, []
        first = torch.zeros_like(mask)
        first[:, 0] = True
        for lag in self.config.lags:
            r = heads[f"res_l{lag}"]
            nll_a = gaussian_nll(r[..., 0], r[..., 1], amount)[mask].mean()
            gap_ok = mask & ~first  # the window's first event has no previous event: its gap is a placeholder 0
            nll_g = gaussian_nll(r[..., 2], r[..., 3], gap)[gap_ok].mean() if gap_ok.any() else nll_a * 0.0
            result[f"amount_nll_l{lag}"] = nll_a.detach()
            nll_c = [heads[f"nll_l{lag}_{n}"][mask].mean() for n in self.cat_targets]
            res.append(nll_a + nll_g + (torch.stack(nll_c).sum() if nll_c else 0.0))
        residual = torch.stack(res).mean()
        result["residual_loss"] = residual.detach()
        result["loss"] = forecast + residual
        return result

    @torch.no_grad()
    def event_features(
        self, encoder: TransactionEncoder, batch: dict, out, prefix: Tensor | None = None, first: Tensor | None = None
    ) -> dict[str, Tensor]:
        """(B, T) feature tensors: state_00.. (the bottleneck of the state *before* event t; the empty-history
        state for a window's first event), and per lag L amount_z_l<L>, gap_z_l<L> (signed residuals in
        standard deviations), amount_nll_l<L>, gap_nll_l<L> (NaN gap columns for a window's first event),
        <field>_nll_l<L> per categorical target, and event_nll_l<L> (their sum; the gap term counts 0 for a
        window's first event). `prefix` as in `heads`; `first` (B, T) bool: events without a previous one
        (default: each row's first position)."""
        mask = batch["mask"].bool()
        heads = self.heads(encoder, batch, out, prefix)
        states = encoder.causal_tokens(out).float()
        full = states if prefix is None else torch.cat([prefix.to(states.dtype), states], 1)
        before = self.bottleneck(lagged_states(full, 1)[:, full.shape[1] - states.shape[1] :])
        feats = {f"state_{i:02d}": before[..., i] for i in range(before.shape[-1])}
        amount, gap = batch["num"][AMOUNT].float(), batch["num"][TIME_GAP].float()
        if first is None:
            first = torch.zeros_like(mask)
            first[:, 0] = True
        for lag in self.config.lags:
            r = heads[f"res_l{lag}"]
            feats[f"amount_z_l{lag}"] = (amount - r[..., 0]) * torch.exp(-0.5 * r[..., 1])
            feats[f"amount_nll_l{lag}"] = gaussian_nll(r[..., 0], r[..., 1], amount)
            feats[f"gap_z_l{lag}"] = ((gap - r[..., 2]) * torch.exp(-0.5 * r[..., 3])).masked_fill(first, float("nan"))
            gap_nll = gaussian_nll(r[..., 2], r[..., 3], gap)
            feats[f"gap_nll_l{lag}"] = gap_nll.masked_fill(first, float("nan"))
            total = feats[f"amount_nll_l{lag}"] + gap_nll.masked_fill(first, 0.0)
            for name in self.cat_targets:
                feats[f"{name}_nll_l{lag}"] = heads[f"nll_l{lag}_{name}"]
                total = total + heads[f"nll_l{lag}_{name}"]
            feats[f"event_nll_l{lag}"] = total
        return feats
