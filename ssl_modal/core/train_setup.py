"""What `Trainer.fit` sets up before its first step: placement, optimiser, schedule, RNG and resumed state."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint as ckpt_io
from .config import save_config
from .contract import SSLModel
from .distributed import DistInfo, ShardedEpochSampler, init_distributed
from .loop import TimeBudget, warmup_cosine
from .monitors import truncate_metrics
from .precision import resolve_autocast
from .train_config import TrainConfig

log = logging.getLogger("ssl_modal")


@dataclass
class Run:
    """Everything one `fit` call holds besides the model: where it runs, the optimisation state, the position in
    the data (`state`, saved in every checkpoint) and the wall-clock budget."""

    info: DistInfo
    device: torch.device
    precision: str  # "no", "bf16" or "fp16"
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    budget: TimeBudget
    state: dict[str, Any]
    train_model: torch.nn.Module  # the model, or its DDP wrapper
    out_dir: Path
    per_epoch: int

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    return device


def build_optimizer(model: torch.nn.Module, c: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only; `model.lr_scales` ({name prefix: factor}) scales
    the learning rate of the parameters under a prefix (e.g. {"encoder.": 0.1} for fine-tuning)."""
    scales = dict(getattr(model, "lr_scales", None) or {})
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
        decay = not (p.ndim < 2 or "norm" in name.lower())
        groups.setdefault((scale, decay), []).append(p)
    params = [
        {"params": ps, "lr": c.learning_rate * scale, "weight_decay": c.weight_decay if decay else 0.0}
        for (scale, decay), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1]))
    ]
    # fused: one kernel per parameter group instead of a loop of small ops (CPU and CUDA, torch >= 2.4)
    return torch.optim.AdamW(params, lr=c.learning_rate, betas=c.betas, fused=True)


def check_resumable(saved: dict, model: SSLModel, path: Path) -> None:
    """Refuse to resume from a checkpoint of another model (kind, builder and config must match)."""
    spec = model.spec
    saved_spec = saved.get("spec") or {}
    if (
        spec is not None
        and saved_spec
        and (saved_spec.get("builder"), saved_spec.get("config")) != (spec.builder, spec.config)
    ):
        raise ckpt_io.CheckpointError(
            f"{path} holds a different model (kind '{saved_spec.get('kind')}', builder "
            f"{saved_spec.get('builder')}) than the one being trained (kind '{spec.kind}'); "
            "use a new train.output_dir or set train.resume=false"
        )


def start_run(c: TrainConfig, model: SSLModel, train_data, val_data) -> Run:
    """Check the inputs, place the model, build optimiser/schedule/scaler/generator, then either restore the
    latest valid checkpoint under output_dir or seed every RNG; wrap in DDP when distributed."""
    if len(train_data) == 0:
        raise ValueError("train_data is empty: nothing to train on")
    out_dir = Path(c.output_dir)
    device_type = "cuda" if (c.device == "auto" and torch.cuda.is_available()) or c.device.startswith("cuda") else "cpu"
    info = init_distributed(device_type)
    device = resolve_device(c.device, info)
    per_epoch = (
        train_data.batches_per_epoch(c.batch_size, info.world_size)
        if hasattr(train_data, "batches_per_epoch")
        else ShardedEpochSampler.batches_per_epoch(len(train_data), c.batch_size, info.world_size)
    )
    if per_epoch == 0:
        raise ValueError(
            f"train_data has {len(train_data)} examples, fewer than one batch "
            f"(batch_size {c.batch_size} x {info.world_size} process(es)): lower train.batch_size"
        )
    precision, reason = resolve_autocast(c.autocast, device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.autocast='fp16' needs CUDA; use 'bf16' on CPU")
    if info.is_main:
        log.info("precision: %s", reason)
    if c.early_stopping_patience and val_data is None:
        raise ValueError("train.early_stopping_patience needs validation data (val_data)")

    model.to(device)
    optimizer = build_optimizer(model, c)
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch_in_epoch": 0,
        "elapsed_s": 0.0,
        "best_val": float("inf"),
        "bad_evals": 0,
    }
    resumed = ckpt_io.latest_valid_checkpoint(out_dir / "checkpoints") if c.resume else None
    if resumed is not None:
        state.update(resumed[1]["trainer"])
    budget = TimeBudget(c.max_minutes, state["elapsed_s"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(c.warmup_steps, c.max_steps, c.min_lr_ratio, budget.progress if c.max_minutes else None),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator(device=device)
    generator.manual_seed(c.seed + 1000 * info.rank)
    model.set_generator(generator)

    if resumed is not None:
        path, saved = resumed
        check_resumable(saved, model, path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        rng = saved["rng"]
        if len(rng) == info.world_size:
            ckpt_io.restore_rng(rng[info.rank], generator)
        else:
            log.warning(
                "resuming with %d processes from a %d-process checkpoint: RNG streams restart",
                info.world_size,
                len(rng),
            )
        if info.is_main:
            log.info("resumed from %s at step %d", path, state["step"])
    else:
        torch.manual_seed(c.seed + info.rank)
        np.random.seed((c.seed + info.rank) % 2**32)
        random.seed(c.seed + info.rank)

    train_model: torch.nn.Module = model
    if info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=c.find_unused_parameters,
        )
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(c, out_dir / "train_config.yaml")
        truncate_metrics(out_dir, state["step"])  # a resumed run's log carries no repeated steps
        left_out = len(train_data) - per_epoch * c.batch_size * info.world_size
        if left_out:
            log.info(
                "each epoch uses %d full batches; %d shuffled examples wait for the next epoch", per_epoch, left_out
            )
    return Run(
        info, device, precision, optimizer, scheduler, scaler, generator, budget, state, train_model, out_dir, per_epoch
    )
