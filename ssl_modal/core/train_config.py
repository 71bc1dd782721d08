"""The trainer's settings (a recipe's `train:` section) and what `Trainer.fit` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError
from .ranges import at_least, check_fields, in_unit_interval, non_negative, positive, ranged


@dataclass
class TrainConfig:
    """Everything the trainer does is set here (a recipe's `train:` section)."""

    output_dir: str = "runs/default"
    max_steps: int = at_least(1, 1000)  # optimizer steps
    max_minutes: float = non_negative(0.0)  # wall-clock budget over all resumes; 0 = none. The LR schedule then follows
    # whichever of steps or minutes runs out first
    batch_size: int = at_least(1, 32)  # examples per process per micro-batch
    grad_accum_steps: int = at_least(1, 1)
    learning_rate: float = positive(5e-4)
    weight_decay: float = non_negative(0.01)
    betas: tuple[float, float] = ranged("[0, 1)", (0.9, 0.999))
    warmup_steps: int = non_negative(100)
    min_lr_ratio: float = in_unit_interval(0.0, what="a ratio")  # cosine decays to learning_rate * min_lr_ratio
    max_grad_norm: float = non_negative(1.0)  # 0 disables clipping
    autocast: str = "no"  # "no" | "bf16" | "fp16" (fp16 on CUDA only) | "auto" (bf16 where native)
    seed: int = non_negative(0)
    log_every: int = at_least(1, 10)
    checkpoint_every: int = at_least(1, 500)
    keep_last: int = at_least(1, 2)
    monitor_every: int = non_negative(50)  # collapse monitors on pooled embeddings; 0 disables
    eval_every: int = non_negative(0)  # validation loss every N steps; 0 = only at the end
    resume: bool = True  # continue from the newest valid checkpoint in output_dir
    num_workers: int = non_negative(0)
    progress: bool = True
    tensorboard: bool = True
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    find_unused_parameters: bool = False  # DDP: set when an objective leaves parameters unused
    early_stopping_patience: int = non_negative(0)  # with val_data and eval_every: stop after N evaluations
    # without a lower val/loss and keep the best weights in model.pt; 0 = off

    def __post_init__(self) -> None:
        check_fields(self, "train")
        if len(self.betas) != 2:
            raise ConfigError(f"train.betas: expected two numbers in [0, 1), found {list(self.betas)}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.autocast not in ("no", "bf16", "fp16", "auto"):
            raise ConfigError(f"train.autocast: expected 'no', 'bf16', 'fp16' or 'auto', found '{self.autocast}'")
        if self.early_stopping_patience and not self.eval_every:
            raise ConfigError("train.early_stopping_patience needs train.eval_every > 0 (how often to validate)")


@dataclass
class TrainResult:
    step: int
    output_dir: Path
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
