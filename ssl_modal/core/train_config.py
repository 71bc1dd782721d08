"""The trainer's settings (a recipe's `train:` section) and what `Trainer.fit` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError


@dataclass
class TrainConfig:
    """Everything the trainer does is set here (a recipe's `train:` section)."""

    output_dir: str = "runs/default"
    max_steps: int = 1000  # optimizer steps
    max_minutes: float = 0.0  # wall-clock budget over all resumes; 0 = none. The LR schedule then follows
    # whichever of steps or minutes runs out first
    batch_size: int = 32  # examples per process per micro-batch
    grad_accum_steps: int = 1
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine decays to learning_rate * min_lr_ratio
    max_grad_norm: float = 1.0  # 0 disables clipping
    autocast: str = "no"  # "no" | "bf16" | "fp16" (fp16 on CUDA only) | "auto" (bf16 where native)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 2
    monitor_every: int = 50  # collapse monitors on pooled embeddings; 0 disables
    eval_every: int = 0  # validation loss every N steps; 0 = only at the end
    resume: bool = True  # continue from the newest valid checkpoint in output_dir
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    find_unused_parameters: bool = False  # DDP: set when an objective leaves parameters unused
    early_stopping_patience: int = 0  # with val_data and eval_every: stop after N evaluations without a lower
    # val/loss and keep the best weights in model.pt; 0 = off

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ConfigError(f"train.betas: expected two numbers in [0, 1), found {list(self.betas)}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.autocast not in ("no", "bf16", "fp16", "auto"):
            raise ConfigError(f"train.autocast: expected 'no', 'bf16', 'fp16' or 'auto', found '{self.autocast}'")
        rules = {  # key: (lowest allowed, strict?)
            "max_steps": (1, False),
            "batch_size": (1, False),
            "grad_accum_steps": (1, False),
            "log_every": (1, False),
            "checkpoint_every": (1, False),
            "keep_last": (1, False),
            "learning_rate": (0, True),
            "weight_decay": (0, False),
            "warmup_steps": (0, False),
            "min_lr_ratio": (0, False),
            "max_grad_norm": (0, False),
            "max_minutes": (0, False),
            "monitor_every": (0, False),
            "eval_every": (0, False),
            "num_workers": (0, False),
            "early_stopping_patience": (0, False),
        }
        for name, (low, strict) in rules.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"train.{name}: expected a number, found {value!r}")
            if value < low or (strict and value == low) or value != value:
                raise ConfigError(f"train.{name}: expected {'>' if strict else '>='} {low}, found {value}")
        if self.min_lr_ratio > 1:
            raise ConfigError(f"train.min_lr_ratio: expected a ratio in [0, 1], found {self.min_lr_ratio}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas: expected two numbers in [0, 1), found {list(self.betas)}")
        if self.early_stopping_patience and not self.eval_every:
            raise ConfigError("train.early_stopping_patience needs train.eval_every > 0 (how often to validate)")


@dataclass
class TrainResult:
    step: int
    output_dir: Path
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
