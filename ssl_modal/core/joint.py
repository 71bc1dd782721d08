"""Joint-embedding objectives: two augmented views of one batch, one loss that pulls them together.

Pure losses (each tested against a naive reference in tests/core/test_joint.py):
    info_nce(a, b, temperature)            SimCLR's NT-Xent over the 2N views of a batch
    sup_con(a, b, labels, temperature)     supervised contrastive: every view of the same label is a positive
                                           (optionally only views of another group: `groups`)
    byol_loss(p, z)                        2 - 2 cos(p, z), z treated as a constant target
    barlow_twins_loss(a, b, lambd)         cross-correlation towards the identity
    vicreg_loss(a, b, sim, var, cov)       invariance + variance hinge + covariance penalty

`JointEmbedding` is the one Objective that wraps them. A domain opts in by handing it a `views` callable
`views(batch, generator) -> (view_a, view_b)` (usually `TwoViews(build_pipeline(config, REGISTRY))`, see
`ssl_modal.core.views`) and the size of its encoder's pooled output.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ConfigError
from .contract import Encoder, Objective
from .ranges import at_least, check_fields, in_unit_interval, non_negative, positive

METHODS = ("simclr", "byol", "barlow", "vicreg")


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent (Chen et al. 2020): each of the 2N views must pick its partner among the other 2N-1."""
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def sup_con(a: Tensor, b: Tensor, labels: Tensor, temperature: float = 0.1, groups: Tensor | None = None) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) over the 2N views: view i of `a` and view i of
    `b` carry `labels[i]`; each view's positives are the other views of its label (its partner always among
    them), each scored against the other 2N-1 views and averaged. All labels distinct: `info_nce`. With
    `groups` (2N,) (the group of each view, `a`'s then `b`'s), same-label views of the view's OWN group are
    dropped from its positives (they stay in the denominator); the partner always stays a positive."""
    n = a.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"sup_con: expected {n} labels (one per pair), found shape {tuple(labels.shape)}")
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    log_prob = F.log_softmax((z @ z.T / temperature).masked_fill(self_mask, float("-inf")), dim=1)
    positive = positive_mask(labels.to(z.device), None if groups is None else groups.to(z.device))
    per_view = -log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)
    return per_view.mean()


def positive_mask(labels: Tensor, groups: Tensor | None = None) -> Tensor:
    """(2N, 2N) bool: the positives of `sup_con` (same label, not itself; with `groups` (2N,), only views of
    another group, the partner (i, i + N) always)."""
    n = labels.shape[0]
    if groups is not None and groups.shape != (2 * n,):
        raise ValueError(f"sup_con: expected {2 * n} groups (one per view), found shape {tuple(groups.shape)}")
    both = torch.cat([labels, labels])
    eye = torch.eye(2 * n, dtype=torch.bool, device=labels.device)
    positive = (both[:, None] == both[None, :]) & ~eye
    if groups is not None:
        partner = eye.roll(n, dims=1)
        positive &= (groups[:, None] != groups[None, :]) | partner
    return positive


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL (Grill et al. 2020): 2 - 2 cos(online prediction, target projection), mean over the batch."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


def _standardise(x: Tensor) -> Tensor:
    return (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-5)


def barlow_twins_loss(a: Tensor, b: Tensor, lambd: float = 5e-3) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021): sum (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2, C the
    cross-correlation of the batch-standardised projections."""
    n = a.shape[0]
    c = _standardise(a.float()).T @ _standardise(b.float()) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def _off_diagonal_sq_sum(cov: Tensor) -> Tensor:
    return cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()


def vicreg_loss(a: Tensor, b: Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0) -> Tensor:
    """VICReg (Bardes et al. 2022): sim * MSE + var * hinge(1 - std) + cov * off-diagonal covariance^2 / D."""
    a, b = a.float(), b.float()
    n, d = a.shape
    invariance = F.mse_loss(a, b)
    a, b = a - a.mean(0), b - b.mean(0)
    std_a, std_b = torch.sqrt(a.var(0) + 1e-4), torch.sqrt(b.var(0) + 1e-4)
    variance = F.relu(1 - std_a).mean() / 2 + F.relu(1 - std_b).mean() / 2
    cov_a, cov_b = a.T @ a / (n - 1), b.T @ b / (n - 1)
    covariance = _off_diagonal_sq_sum(cov_a) / d + _off_diagonal_sq_sum(cov_b) / d
    return sim * invariance + var * variance + cov * covariance


@dataclass
class JointConfig:
    """A joint-embedding objective (a recipe's `model.joint:` section)."""

    method: str = "byol"  # simclr | byol | barlow | vicreg
    hidden: int = at_least(1, 1024)  # projector (and BYOL predictor) hidden width
    dim: int = at_least(1, 256)  # projection size the loss sees
    temperature: float = positive(0.1)  # simclr
    ema: float = in_unit_interval(0.99, what="a momentum")  # byol: target momentum at step 0, cosine-raised to 1
    barlow_lambda: float = non_negative(5e-3)  # barlow: weight of the off-diagonal terms
    vicreg_sim: float = non_negative(25.0)
    vicreg_var: float = non_negative(25.0)
    vicreg_cov: float = non_negative(1.0)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"joint.method: expected one of {', '.join(METHODS)}, found '{self.method}'")
        check_fields(self, "joint")


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear, the projector/predictor of SimCLR, BYOL, Barlow Twins and VICReg."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
    )


class JointEmbedding(Objective):
    """Two views -> encoder -> projector -> one of the four losses (symmetrised).

    BYOL needs the online `encoder` at construction: its EMA copy (the target) is part of this objective's
    state_dict, so checkpoints and exact resume carry it; the trainer calls `on_step_end` after every
    optimizer step to move the target. With `labels_key` (simclr only), `batch[labels_key]` (B,) holds a
    label per pair (e.g. label-free cluster ids) and the loss is `sup_con`: same-label views are positives too;
    with `groups_key` as well, each view dict the `views` callable returns carries its group (B,) there and
    same-group views are not positives (`sup_con(..., groups=)`). With `num_labels` and `label_weight` > 0, a
    linear classifier of the labels on the pooled vectors adds `label_weight` x its cross-entropy (both views).
    """

    def __init__(
        self,
        config: JointConfig,
        input_dim: int,
        views: Callable[[dict, torch.Generator], tuple],
        encoder: Encoder | None = None,
        labels_key: str | None = None,
        groups_key: str | None = None,
        num_labels: int = 0,
        label_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if labels_key is not None and config.method != "simclr":
            raise ConfigError(f"labels per pair ('{labels_key}') need the simclr method, found '{config.method}'")
        if groups_key is not None and labels_key is None:
            raise ConfigError(f"groups per view ('{groups_key}') need labels per pair (labels_key)")
        self.config = config
        self.views = views
        self.labels_key = labels_key
        self.groups_key = groups_key
        self.projector = mlp(input_dim, config.hidden, config.dim)
        if config.method == "byol":
            if encoder is None:
                raise ValueError("JointEmbedding(method='byol') needs the online encoder to copy as its target")
            self.predictor = mlp(config.dim, config.hidden, config.dim)
            self.target_encoder = copy.deepcopy(encoder)
            self.target_projector = copy.deepcopy(self.projector)
            for p in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
                p.requires_grad_(False)
        self.label_weight = float(label_weight)
        self.label_head: nn.Linear | None = None
        if self.label_weight > 0:  # built last: the other modules' initial weights do not move
            if labels_key is None or num_labels < 2:
                raise ConfigError(f"a label classifier needs labels per pair and >= 2 labels, found {num_labels}")
            self.label_head = nn.Linear(input_dim, num_labels)

    def momentum(self, step: int, max_steps: int) -> float:
        """BYOL's schedule: 1 - (1 - ema) * (cos(pi * step / max_steps) + 1) / 2."""
        progress = min(1.0, step / max(1, max_steps))
        return 1 - (1 - self.config.ema) * (math.cos(math.pi * progress) + 1) / 2

    @torch.no_grad()
    def on_step_end(self, encoder: Encoder, step: int, max_steps: int) -> None:
        if self.config.method != "byol":
            return
        tau = self.momentum(step, max_steps)
        for online, target in ((encoder, self.target_encoder), (self.projector, self.target_projector)):
            for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
                p_t.lerp_(p_o.detach(), 1 - tau)
            for b_o, b_t in zip(online.buffers(), target.buffers(), strict=True):
                b_t.copy_(b_o)

    def _target(self, batch: dict) -> Tensor:
        with torch.no_grad():
            self.target_encoder.train(self.training)
            return self.target_projector(self.target_encoder(batch).pooled)

    def _groups(self, view_a: dict, view_b: dict) -> Tensor | None:
        if self.groups_key is None:
            return None
        if self.groups_key not in view_a or self.groups_key not in view_b:
            raise KeyError(f"the joint objective needs '{self.groups_key}' in both views; found keys {sorted(view_a)}")
        return torch.cat([view_a[self.groups_key], view_b[self.groups_key]])

    def forward(self, encoder: Encoder, batch: dict) -> dict[str, Tensor]:
        view_a, view_b = self.views(batch, self.rng(_device_of(batch)))
        ha, hb = encoder(view_a).pooled, encoder(view_b).pooled
        za, zb = self.projector(ha), self.projector(hb)
        c = self.config
        out: dict[str, Tensor] = {}
        if c.method == "simclr":
            if self.labels_key is None:
                loss = info_nce(za, zb, c.temperature)
            else:
                if self.labels_key not in batch:
                    raise KeyError(f"the joint objective needs batch['{self.labels_key}']; found keys {sorted(batch)}")
                labels, groups = batch[self.labels_key], self._groups(view_a, view_b)
                loss = sup_con(za, zb, labels, c.temperature, groups)
                out["positives"] = positive_mask(labels, groups).sum(1).float().mean()
                if self.label_head is not None:
                    ce = (
                        F.cross_entropy(self.label_head(ha), labels) + F.cross_entropy(self.label_head(hb), labels)
                    ) / 2
                    loss = loss + self.label_weight * ce
                    out["label_ce"] = ce.detach()
            with torch.no_grad():
                sims = F.normalize(za.float(), dim=1) @ F.normalize(zb.float(), dim=1).T
                out["acc"] = (sims.argmax(1) == torch.arange(len(sims), device=sims.device)).float().mean()
        elif c.method == "byol":
            pa, pb = self.predictor(za), self.predictor(zb)
            loss = (byol_loss(pa, self._target(view_b)) + byol_loss(pb, self._target(view_a))) / 2
        elif c.method == "barlow":
            loss = barlow_twins_loss(za, zb, c.barlow_lambda)
        else:
            loss = vicreg_loss(za, zb, c.vicreg_sim, c.vicreg_var, c.vicreg_cov)
        with torch.no_grad():
            out["pos_cos"] = F.cosine_similarity(ha.float(), hb.float(), dim=1).mean()
            out["proj_std"] = F.normalize(za.float(), dim=1).std(0).mean()
        out["loss"] = loss
        return out


def _device_of(batch) -> torch.device:
    for value in batch.values() if isinstance(batch, dict) else [batch]:
        if isinstance(value, Tensor):
            return value.device
    return torch.device("cpu")
