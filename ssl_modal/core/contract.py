"""The three small types every domain meets: EncoderOutput, Encoder, Objective, and their composition SSLModel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """What every encoder returns.

    tokens: (B, T, D) per-position features (T=1 for single vectors)
    mask:   (B, T) bool, True = real position
    pooled: (B, D) one vector per example: what `encode` exports
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor


class Encoder(nn.Module):
    """One per domain, any architecture: `forward(batch) -> EncoderOutput`."""

    def forward(self, batch: dict) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class Objective(nn.Module):
    """One pretext task. Owns its corruption (masks, shuffles, shifts, crops) and its heads.

    `forward(encoder, batch)` returns a dict that must contain "loss"; other keys are logged.
    Random corruptions must draw from `self.generator` (set by the trainer through
    `SSLModel.set_generator`) so that runs are reproducible and resumable.
    """

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator | None = None

    def rng(self, device: torch.device | str) -> torch.Generator:
        """The generator to draw corruptions from, on `device` (a seeded default if none was set)."""
        device = torch.device(device)
        g = self.generator
        if g is None or g.device.type != device.type:
            g = torch.Generator(device=device)
            g.manual_seed(0)
            self.generator = g
        return g

    def forward(self, encoder: Encoder, batch: dict) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def on_step_end(self, encoder: Encoder, step: int, max_steps: int) -> None:
        """Called by the trainer after every optimizer step (e.g. BYOL's EMA target update). No-op by default."""


@dataclass
class ModelSpec:
    """How to rebuild a model without the recipe: `builder` is "ssl_modal.<module>:<function>",
    called as `builder(config)`; `config` is a plain dict (JSON/YAML-able)."""

    builder: str
    config: dict = field(default_factory=dict)
    kind: str = ""  # a human-readable name, e.g. "text-mlm"


class SSLModel(nn.Module):
    """An encoder plus named objectives with weights. No subclassing per domain.

    `forward(batch)` returns {"loss": weighted sum, "<name>/loss": ..., "<name>/<metric>": ...}.
    `embed(batch)` returns `encoder(batch).pooled` without gradients, in eval mode.
    `collate` (optional) turns a list of raw examples into a batch, used by `encode`/`export`.
    `lr_scales` ({parameter-name prefix: factor}) lets the trainer give parts a smaller learning rate.
    """

    def __init__(
        self,
        encoder: Encoder,
        objectives: Mapping[str, Objective],
        weights: Mapping[str, float] | None = None,
        spec: ModelSpec | None = None,
        collate: Callable[[list], dict] | None = None,
    ) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("SSLModel needs at least one objective")
        weights = dict(weights or {})
        unknown = set(weights) - set(objectives)
        if unknown:
            raise ValueError(
                f"weights name objectives that do not exist: {sorted(unknown)}; objectives are {sorted(objectives)}"
            )
        self.encoder = encoder
        self.objectives = nn.ModuleDict(dict(objectives))
        self.weights = {name: float(weights.get(name, 1.0)) for name in objectives}
        self.spec = spec
        self.collate = collate
        self.lr_scales: dict[str, float] = {}

    def set_generator(self, generator: torch.Generator) -> None:
        """Make every objective draw its corruptions from `generator`."""
        for objective in self.objectives.values():
            typing_cast_objective(objective).generator = generator

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Let every objective act after an optimizer step (EMA targets, schedules)."""
        for objective in self.objectives.values():
            typing_cast_objective(objective).on_step_end(self.encoder, step, max_steps)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, objective in self.objectives.items():
            result = objective(self.encoder, batch)
            if "loss" not in result:
                raise KeyError(f"objective '{name}' returned no 'loss' (keys: {sorted(result)})")
            for key, value in result.items():
                out[f"{name}/{key}"] = value
            weight = self.weights[name]
            if weight:
                part = weight * result["loss"]
                total = part if total is None else total + part
        if total is None:
            raise ValueError("every objective has weight 0: nothing to train")
        out["loss"] = total
        return out

    @torch.no_grad()
    def embed(self, batch: dict) -> Tensor:
        was_training = self.training
        self.eval()
        try:
            return self.encoder(batch).pooled
        finally:
            self.train(was_training)


def typing_cast_objective(module: nn.Module) -> Objective:
    """An entry of `SSLModel.objectives` (an nn.ModuleDict, typed as holding plain Modules)."""
    return module  # type: ignore[return-value]


def batch_size_of(batch: Any) -> int:
    """Number of examples in a batch: the leading size of its first tensor."""
    if isinstance(batch, Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping):
        for value in batch.values():
            n = batch_size_of(value)
            if n:
                return n
    if isinstance(batch, (list, tuple)) and batch:
        return batch_size_of(batch[0]) if isinstance(batch[0], (Tensor, Mapping)) else len(batch)
    return 0


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a (nested) batch to `device`."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch
