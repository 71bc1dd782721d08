"""The three transaction pretext tasks, each an `Objective` drawing its corruptions from `self.rng`.

- MaskedAttribute: hide ~15 % of events (or single fields), predict each hidden categorical field.
- OrderVerification: classify original vs corrupted (sub-windows swapped or a span shuffled) windows,
  plus a head regressing the (transformed) time gap to the next event.
- ContrastiveSubsequences: CoLES; slices of one window are positives, other windows negatives (InfoNCE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_modal.core.contract import Objective
from ssl_modal.transactions.config import ContrastiveConfig, MaskedConfig, OrderConfig
from ssl_modal.transactions.encoder import TransactionEncoder
from ssl_modal.transactions.losses import (
    gap_loss,
    gather_events,
    hide_fields,
    masked_field_loss,
    multi_positive_info_nce,
    order_loss,
    shuffle_permutation,
    slice_indices,
    swap_permutation,
)

MASK_ID = 1  # reserved id of every categorical vocabulary (PAD=0, MASK=1, UNK=2)
AMOUNT_BIN, AMOUNT, TIME_GAP = "amount_bin", "amount", "time_gap"
LINKED_NUMERIC = {AMOUNT_BIN: AMOUNT}  # hiding the bin also hides the value it was cut from


class MaskedAttribute(Objective):
    """Masked-attribute modelling with one linear head per target field; logs "<field>/acc" and
    "<field>/loss" for every target field."""

    def __init__(self, encoder: TransactionEncoder, config: MaskedConfig):
        super().__init__()
        fields = encoder.fields
        self.config = config
        self.cat_fields = [n for n, f in fields.items() if f["kind"] == "categorical"]
        self.num_fields = [n for n, f in fields.items() if f["kind"] == "numeric"]
        targets = list(config.targets) if config.targets else list(self.cat_fields)
        bad = [t for t in targets if t not in self.cat_fields]
        if bad:
            raise ValueError(
                f"objectives.masked.targets: {bad} are not categorical fields; categorical fields are {self.cat_fields}"
            )
        if not targets:
            raise ValueError("objectives.masked: there are no categorical fields to predict")
        self.targets = targets
        self.heads = nn.ModuleList(nn.Linear(encoder.dim, int(fields[t]["vocab_size"])) for t in targets)

    def hidden_positions(self, mask: Tensor, generator: torch.Generator) -> tuple[dict, dict]:
        """(categorical, numeric) dicts of (B, T) bool: what to hide for this batch."""
        p = self.config.probability
        if self.config.mode == "event":
            sel = (torch.rand(mask.shape, generator=generator, device=mask.device) < p) & mask
            return {n: sel for n in self.cat_fields}, {n: sel for n in self.num_fields}
        cat = {t: (torch.rand(mask.shape, generator=generator, device=mask.device) < p) & mask for t in self.targets}
        num = {LINKED_NUMERIC[t]: cat[t] for t in cat if LINKED_NUMERIC.get(t) in self.num_fields}
        return cat, num

    def logits(self, tokens: Tensor) -> dict[str, Tensor]:
        """Per target field, logits (..., V) of every position of `tokens` (..., D)."""
        return {t: head(tokens) for t, head in zip(self.targets, self.heads, strict=True)}

    def forward(self, encoder: TransactionEncoder, batch: dict) -> dict[str, Tensor]:
        mask = batch["mask"].bool()
        cat_hidden, num_hidden = self.hidden_positions(mask, self.rng(mask.device))
        out = encoder(hide_fields(batch, cat_hidden, num_hidden, MASK_ID))
        result, losses = {}, []
        for t, head in zip(self.targets, self.heads, strict=True):
            where = cat_hidden[t]
            loss, acc = masked_field_loss(head(out.tokens[where]), batch["cat"][t][where])
            losses.append(loss)
            result[f"{t}/loss"], result[f"{t}/acc"] = loss.detach(), acc
        result["loss"] = torch.stack(losses).mean()
        result["masked_fraction"] = cat_hidden[self.targets[0]].sum().float() / mask.sum().clamp(min=1)
        return result


class OrderVerification(Objective):
    """Half of the eligible windows (>= min_length events) get corrupted; a head on the pooled embedding
    says which. The uncorrupted windows also train a time-gap head: the causal token of event t predicts
    the "time_gap" value of event t+1. Logs "acc", "order_loss", "gap_loss"."""

    def __init__(self, encoder: TransactionEncoder, config: OrderConfig):
        super().__init__()
        self.config = config
        d = encoder.dim
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        self.use_gap = config.gap_weight > 0 and TIME_GAP in encoder.fields
        if self.use_gap and encoder.causal_dim is None:
            raise ValueError(
                "objectives.order.gap_weight > 0 needs an encoder whose tokens do not see the future: "
                "set encoder.causal=true (Transformer) or objectives.order.gap_weight=0"
            )
        self.gap_head = nn.Linear(encoder.causal_dim, 1) if self.use_gap else None

    def corrupt(self, batch: dict, generator: torch.Generator) -> tuple[dict, Tensor, Tensor]:
        """(batch with about half its eligible rows corrupted, labels (B,) bool, eligible (B,) bool)."""
        mask = batch["mask"].bool()
        lengths = mask.sum(1)
        eligible = lengths >= max(self.config.min_length, 3)
        labels = (torch.rand(lengths.shape, generator=generator, device=mask.device) < 0.5) & eligible
        make = swap_permutation if self.config.corruption == "swap" else shuffle_permutation
        perm = make(lengths, mask.shape[1], self.config.span, generator)
        identity = torch.arange(mask.shape[1], device=mask.device)[None].expand_as(perm)
        perm = torch.where(labels[:, None], perm, identity)
        return gather_events(batch, perm), labels, eligible

    def window_logits(self, pooled: Tensor) -> Tensor:
        return self.head(pooled).squeeze(-1)

    def gap_predictions(self, encoder: TransactionEncoder, out) -> Tensor:
        """(B, T) predicted time gap to the next event, from each event's causal token."""
        return self.gap_head(encoder.causal_tokens(out)).squeeze(-1)

    def forward(self, encoder: TransactionEncoder, batch: dict) -> dict[str, Tensor]:
        corrupted, labels, eligible = self.corrupt(batch, self.rng(batch["mask"].device))
        out = encoder(corrupted)
        loss, acc = order_loss(self.window_logits(out.pooled), labels, eligible)
        result = {"order_loss": loss.detach(), "acc": acc}
        if self.use_gap:
            mask = batch["mask"].bool()
            pred = self.gap_predictions(encoder, out)[:, :-1]
            target = batch["num"][TIME_GAP][:, 1:]
            valid = mask[:, 1:] & ~labels[:, None]
            g = gap_loss(pred, target, valid)
            result["gap_loss"] = g.detach()
            loss = loss + self.config.gap_weight * g
        result["loss"] = loss
        return result


class ContrastiveSubsequences(Objective):
    """CoLES: `views` random slices per window, encoded; slices of the same window are positives.
    Logs "pos_top1": how often an anchor's most similar other slice is one of its positives."""

    def __init__(self, encoder: TransactionEncoder, config: ContrastiveConfig):
        super().__init__()
        self.config = config

    def forward(self, encoder: TransactionEncoder, batch: dict) -> dict[str, Tensor]:
        c = self.config
        mask = batch["mask"].bool()
        index, view_mask, rows = slice_indices(
            mask.sum(1), c.views, c.min_fraction, c.max_fraction, c.max_events, self.rng(mask.device)
        )
        z = F.normalize(encoder(gather_events(batch, index, rows, view_mask)).pooled.float(), dim=-1)
        loss = multi_positive_info_nce(z, rows, c.temperature)
        with torch.no_grad():
            sim = (z @ z.T).fill_diagonal_(float("-inf"))
            top1 = (rows[sim.argmax(1)] == rows).float().mean()
        return {"loss": loss, "pos_top1": top1}
