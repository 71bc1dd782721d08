"""An MLP encoder for fixed-length float vectors and two objectives: masked-feature and plain reconstruction."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ssl_modal.core.config import from_dict, to_dict
from ssl_modal.core.contract import Encoder, EncoderOutput, ModelSpec, Objective, SSLModel
from ssl_modal.core.ranges import dropout_rate, in_unit_interval, loss_weight, positive


@dataclass
class VectorConfig:
    dim: int = positive(16)  # input features per example
    hidden: int = positive(64)
    embed_dim: int = positive(32)
    dropout: float = dropout_rate(0.0)
    mask_prob: float = in_unit_interval(0.25)  # masked-feature objective: share of features hidden
    objectives: dict[str, float] = loss_weight(factory=lambda: {"masked": 1.0})  # name -> weight
    columns: list = field(default_factory=list)  # feature column names, for tables given as dict rows


class MLPEncoder(Encoder):
    def __init__(self, cfg: VectorConfig) -> None:
        super().__init__()
        self.dim = cfg.dim
        self.net = nn.Sequential(
            nn.Linear(cfg.dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.embed_dim)
        )

    def forward(self, batch: dict) -> EncoderOutput:
        x = batch["x"]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"batch['x']: expected shape (batch, {self.dim}), found {tuple(x.shape)}")
        h = self.net(x)
        return EncoderOutput(
            tokens=h[:, None], mask=torch.ones(h.shape[0], 1, dtype=torch.bool, device=h.device), pooled=h
        )


class MaskedFeatureObjective(Objective):
    """Zero a random `mask_prob` share of features; predict them back (MSE on masked features only)."""

    def __init__(self, cfg: VectorConfig) -> None:
        super().__init__()
        self.mask_prob = cfg.mask_prob
        self.head = nn.Linear(cfg.embed_dim, cfg.dim)

    def forward(self, encoder: Encoder, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["x"]
        mask = torch.rand(x.shape, generator=self.rng(x.device), device=x.device) < self.mask_prob
        pred = self.head(encoder({**batch, "x": x.masked_fill(mask, 0.0)}).pooled)
        err = (pred - x) ** 2
        loss = (err * mask).sum() / mask.sum().clamp(min=1)
        return {"loss": loss, "masked_share": mask.float().mean()}


class ReconstructionObjective(Objective):
    """Plain autoencoding (no randomness): predict x from x."""

    def __init__(self, cfg: VectorConfig) -> None:
        super().__init__()
        self.head = nn.Linear(cfg.embed_dim, cfg.dim)

    def forward(self, encoder: Encoder, batch: dict) -> dict[str, torch.Tensor]:
        pred = self.head(encoder(batch).pooled)
        return {"loss": nn.functional.mse_loss(pred, batch["x"])}


OBJECTIVES = {"masked": MaskedFeatureObjective, "reconstruct": ReconstructionObjective}


def collate_vectors(items: list, columns: list | None = None) -> dict:
    """Stack items into {"x": (B, D) float32}. Items are arrays/lists, dicts with key "x", or
    table rows (dicts) whose `columns` hold the features."""
    rows = []
    for item in items:
        if isinstance(item, dict):
            if "x" in item:
                item = item["x"]
            elif columns:
                try:
                    item = [item[c] for c in columns]
                except KeyError as exc:
                    raise KeyError(f"row has no feature column {exc}; expected columns {columns}") from None
            else:
                raise KeyError(f"row needs key 'x' (or a model built with columns); found keys {sorted(item)}")
        rows.append(item)
    return {"x": torch.as_tensor(np.asarray(rows, dtype=np.float32))}


def build_vector_model(config: dict | VectorConfig) -> SSLModel:
    cfg = config if isinstance(config, VectorConfig) else from_dict(VectorConfig, config)
    unknown = set(cfg.objectives) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"vectors: unknown objectives {sorted(unknown)}; available: {sorted(OBJECTIVES)}")
    objectives = {name: OBJECTIVES[name](cfg) for name in cfg.objectives}
    spec = ModelSpec(builder="ssl_modal.vectors.model:build_vector_model", config=to_dict(cfg), kind="vectors")
    collate = functools.partial(collate_vectors, columns=list(cfg.columns))
    return SSLModel(MLPEncoder(cfg), objectives, cfg.objectives, spec=spec, collate=collate)
