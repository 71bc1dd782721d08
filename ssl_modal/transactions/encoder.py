"""The transaction encoder: field embeddings (MCC dimension configurable) -> GRU or Transformer.

Batches follow `collate_sequences`: {"cat": {field: (B, T) ids}, "num": {field: (B, T)}, "mask": (B, T),
"lengths": (B,)}; objectives may add "num_masked": {field: (B, T) bool} for hidden numeric values.
Field names are user data ("type", "training", "forward" ...): modules are kept in ModuleLists by
position, field names are only ever dict keys.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn

from ssl_modal.core.contract import Encoder, EncoderOutput
from ssl_modal.transactions.config import EncoderConfig

MCC_FIELD = "mcc"


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions: (B, T, D), (B, T) bool -> (B, D)."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class FieldEmbedding(nn.Module):
    """Per-event input vectors: one nn.Embedding per categorical field, numeric fields (with their
    masked flags) projected by one linear layer; concatenated, or each projected to `out_dim` and summed."""

    def __init__(self, fields: dict[str, dict], config: EncoderConfig):
        super().__init__()
        self.cat_fields = [n for n, f in fields.items() if f["kind"] == "categorical"]
        self.num_fields = [n for n, f in fields.items() if f["kind"] == "numeric"]
        if not self.cat_fields and not self.num_fields:
            raise ValueError("the encoder needs at least one field; the preprocessor reported none")
        dims = [
            int(config.field_dims.get(n, config.mcc_dim if n == MCC_FIELD else config.cat_dim)) for n in self.cat_fields
        ]
        self.embeddings = nn.ModuleList(
            nn.Embedding(int(fields[n]["vocab_size"]), d, padding_idx=0)
            for n, d in zip(self.cat_fields, dims, strict=True)
        )
        self.numeric = nn.Linear(2 * len(self.num_fields), config.num_dim) if self.num_fields else None
        parts = dims + ([config.num_dim] if self.num_fields else [])
        self.combine = config.combine
        if self.combine == "sum":
            self.projections = nn.ModuleList(nn.Linear(d, config.hidden, bias=False) for d in parts)
            self.out_dim = config.hidden
        else:
            self.out_dim = sum(parts)

    def embedding_of(self, field: str) -> nn.Embedding:
        """The embedding table of categorical `field`."""
        if field not in self.cat_fields:
            raise KeyError(f"no categorical field '{field}'; categorical fields: {self.cat_fields}")
        return self.embeddings[self.cat_fields.index(field)]

    def forward(self, batch: dict) -> Tensor:
        cat, parts = batch["cat"], []
        for name, emb in zip(self.cat_fields, self.embeddings, strict=True):
            if name not in cat:
                raise KeyError(f"batch has no categorical field '{name}' (it has {sorted(cat)})")
            parts.append(emb(cat[name]))
        if self.numeric is not None:
            num, flags = batch["num"], batch.get("num_masked") or {}
            missing = [n for n in self.num_fields if n not in num]
            if missing:
                raise KeyError(f"batch has no numeric field(s) {missing} (it has {sorted(num)})")
            ref = num[self.num_fields[0]]
            values = [num[n].to(parts[0].dtype if parts else torch.float32) for n in self.num_fields]
            masked = [
                flags[n].to(values[0].dtype) if n in flags else torch.zeros_like(ref, dtype=values[0].dtype)
                for n in self.num_fields
            ]
            parts.append(self.numeric(torch.stack(values + masked, dim=-1)))
        if self.combine == "sum":
            return torch.stack([p(x) for p, x in zip(self.projections, parts, strict=True)], 0).sum(0)
        return torch.cat(parts, dim=-1)


class TransactionEncoder(Encoder):
    """FieldEmbedding -> GRU (default) or Transformer. `pooled` (the client/window embedding) is the last
    real GRU state (forward last + backward first when bidirectional) or the Transformer's masked mean."""

    def __init__(self, fields: dict[str, dict], config: EncoderConfig | dict | None = None):
        super().__init__()
        config = config if isinstance(config, EncoderConfig) else EncoderConfig(**(config or {}))
        self.config, self.fields = config, dict(fields)
        self.embed = FieldEmbedding(fields, config)
        h = config.hidden
        if config.kind == "gru":
            self.rnn = nn.GRU(
                self.embed.out_dim,
                h,
                num_layers=config.num_layers,
                batch_first=True,
                bidirectional=config.bidirectional,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
            )
            self.dim = h * (2 if config.bidirectional else 1)
        else:
            self.input = nn.Linear(self.embed.out_dim, h) if self.embed.out_dim != h else nn.Identity()
            self.positions = nn.Embedding(config.max_positions, h)
            layer = nn.TransformerEncoderLayer(
                h, config.heads, config.ff_dim, config.dropout, batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(h)
            self.dim = h

    @property
    def causal_dim(self) -> int | None:
        """Width of `causal_tokens`, or None when no position is blind to the future."""
        c = self.config
        if c.kind == "gru":
            return c.hidden
        return c.hidden if c.causal else None

    def causal_tokens(self, out: EncoderOutput) -> Tensor | None:
        """Per-position features that have seen only the past and the present (for next-event heads)."""
        c = self.config
        if c.kind == "gru":
            return out.tokens[..., : c.hidden]
        return out.tokens if c.causal else None

    def forward(self, batch: dict) -> EncoderOutput:
        mask = batch["mask"].bool()
        lengths = batch.get("lengths")
        lengths = mask.sum(1) if lengths is None else lengths
        x = self.embed(batch)
        B, T = mask.shape
        if self.config.kind == "gru":
            if self.config.bidirectional:
                packed = nn.utils.rnn.pack_padded_sequence(
                    x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
                )
                tokens, _ = self.rnn(packed)
                tokens, _ = nn.utils.rnn.pad_packed_sequence(tokens, batch_first=True, total_length=T)
            else:  # padding is at the end: real positions never see it
                tokens, _ = self.rnn(x)
            last = (lengths.clamp(min=1) - 1).to(tokens.device)
            idx = torch.arange(B, device=tokens.device)
            h = self.config.hidden
            pooled = tokens[idx, last, :h]
            if self.config.bidirectional:
                pooled = torch.cat([pooled, tokens[:, 0, h:]], dim=-1)
            tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        else:
            if T > self.config.max_positions:
                raise ValueError(f"window of {T} events exceeds encoder.max_positions={self.config.max_positions}")
            pos = torch.arange(T, device=x.device)
            h = self.input(x) + self.positions(pos)[None]
            attn = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1) if self.config.causal else None
            tokens = self.norm(self.transformer(h, mask=attn, src_key_padding_mask=~mask))
            tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
            pooled = masked_mean(tokens, mask)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)

    def extra_repr(self) -> str:
        return f"fields={list(self.fields)}, config={asdict(self.config)}"
