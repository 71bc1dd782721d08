"""One trainer for every domain: `Trainer(config).fit(model, train_data, collate, val_data=None)`."""
from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import checkpoint as ckpt_io
from .config import save_config, to_dict
from .contract import SSLModel, batch_size_of, move_to
from .distributed import DistInfo, ShardedEpochSampler, all_reduce_mean, barrier, gather_objects, init_distributed
from .monitors import MetricsSink, collapse_stats

log = logging.getLogger("ssl_modal")


@dataclass
class TrainConfig:
    """Everything the trainer does is set here (a recipe's `train:` section)."""

    output_dir: str = "runs/default"
    max_steps: int = 1000            # optimizer steps
    batch_size: int = 32             # examples per process per micro-batch
    grad_accum_steps: int = 1
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0        # cosine decays to learning_rate * min_lr_ratio
    max_grad_norm: float = 1.0       # 0 disables clipping
    autocast: str = "no"             # "no" | "bf16" | "fp16" (fp16 on CUDA only)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 2
    monitor_every: int = 50          # collapse monitors on pooled embeddings; 0 disables
    eval_every: int = 0              # validation loss every N steps; 0 = only at the end
    resume: bool = True              # continue from the newest valid checkpoint in output_dir
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True
    device: str = "auto"             # "auto" | "cpu" | "cuda" | "cuda:1" ...
    find_unused_parameters: bool = False  # DDP: set when an objective leaves parameters unused

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.autocast not in ("no", "bf16", "fp16"):
            raise ValueError(f"train.autocast: expected 'no', 'bf16' or 'fp16', found '{self.autocast}'")
        for name in ("max_steps", "batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: expected >= 1, found {getattr(self, name)}")


@dataclass
class TrainResult:
    step: int
    output_dir: Path
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False


def warmup_cosine(warmup: int, total: int, min_ratio: float):
    """LR multiplier: linear warmup to 1, then cosine down to `min_ratio` at `total` steps."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    return device


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and returns."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = {}
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """AdamW + warmup/cosine, clipping, accumulation, autocast, seeded generators, progress bar,
    JSONL metrics, collapse monitors, atomic checkpoints, exact resume, clean stop on signals, DDP."""

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    # ---- set-up -------------------------------------------------------------------------------
    def _optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        c = self.config
        groups = [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # fused: one kernel per parameter group instead of a loop of small ops (CPU and CUDA, torch >= 2.4)
        return torch.optim.AdamW(groups, lr=c.learning_rate, betas=c.betas, fused=True)

    def _batches(self, data, collate, info: DistInfo, epoch: int, start_batch: int):
        """Yield (epoch, index_in_epoch, batch) forever, starting at a saved position."""
        c = self.config
        if hasattr(data, "stream_batches"):  # streaming shards (core/streaming.py) keep their own position
            yield from data.stream_batches(collate, c.batch_size, info, epoch, start_batch, c.seed)
            return
        per_epoch = ShardedEpochSampler.batches_per_epoch(len(data), c.batch_size, info.world_size)
        while True:
            if start_batch >= per_epoch:
                epoch, start_batch = epoch + 1, 0
            sampler = ShardedEpochSampler(len(data), c.batch_size, epoch, c.seed, info, start_batch=start_batch)
            # a private generator keeps DataLoader from drawing on the global RNG (exact resume)
            loader = DataLoader(data, batch_size=c.batch_size, sampler=sampler, collate_fn=collate,
                                num_workers=c.num_workers, drop_last=True,
                                generator=torch.Generator().manual_seed(c.seed + epoch))
            for i, batch in enumerate(loader, start=start_batch):
                yield epoch, i, batch
            epoch, start_batch = epoch + 1, 0

    def _check_resumable(self, saved: dict, model: SSLModel, path: Path) -> None:
        spec = model.spec
        saved_spec = saved.get("spec") or {}
        if spec is not None and saved_spec and (saved_spec.get("builder"), saved_spec.get("config")) != (
            spec.builder, spec.config
        ):
            raise ckpt_io.CheckpointError(
                f"{path} holds a different model (kind '{saved_spec.get('kind')}', builder "
                f"{saved_spec.get('builder')}) than the one being trained (kind '{spec.kind}'); "
                "use a new train.output_dir or set train.resume=false"
            )

    # ---- the loop -----------------------------------------------------------------------------
    def fit(self, model: SSLModel, train_data, collate, val_data=None) -> TrainResult:
        c = self.config
        if len(train_data) == 0:
            raise ValueError("train_data is empty: nothing to train on")
        out_dir = Path(c.output_dir)
        ckpt_dir = out_dir / "checkpoints"
        device_type = "cuda" if (c.device == "auto" and torch.cuda.is_available()) or c.device.startswith("cuda") else "cpu"
        info = init_distributed(device_type)
        device = _resolve_device(c.device, info)
        per_epoch = (train_data.batches_per_epoch(c.batch_size, info.world_size)
                     if hasattr(train_data, "batches_per_epoch") else
                     ShardedEpochSampler.batches_per_epoch(len(train_data), c.batch_size, info.world_size))
        if per_epoch == 0:
            raise ValueError(
                f"train_data has {len(train_data)} examples, fewer than one batch "
                f"(batch_size {c.batch_size} x {info.world_size} process(es)): lower train.batch_size"
            )
        if c.autocast == "fp16" and device.type != "cuda":
            raise ValueError("train.autocast='fp16' needs CUDA; use 'bf16' on CPU")

        model.to(device)
        optimizer = self._optimizer(model)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(c.warmup_steps, c.max_steps, c.min_lr_ratio))
        scaler = torch.amp.GradScaler(device.type, enabled=c.autocast == "fp16")
        generator = torch.Generator(device=device)
        generator.manual_seed(c.seed + 1000 * info.rank)
        model.set_generator(generator)

        step, epoch, batch_in_epoch = 0, 0, 0
        resumed = ckpt_io.latest_valid_checkpoint(ckpt_dir) if c.resume else None
        if resumed is not None:
            path, saved = resumed
            self._check_resumable(saved, model, path)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            step, epoch, batch_in_epoch = (saved["trainer"][k] for k in ("step", "epoch", "batch_in_epoch"))
            rng = saved["rng"]
            if len(rng) == info.world_size:
                ckpt_io.restore_rng(rng[info.rank], generator)
            else:
                log.warning("resuming with %d processes from a %d-process checkpoint: RNG streams restart",
                            info.world_size, len(rng))
            if info.is_main:
                log.info("resumed from %s at step %d", path, step)
        else:
            torch.manual_seed(c.seed + info.rank)
            np.random.seed((c.seed + info.rank) % 2**32)
            random.seed(c.seed + info.rank)

        train_model = model
        if info.enabled:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=c.find_unused_parameters)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_config(c, out_dir / "train_config.yaml")
            left_out = len(train_data) - per_epoch * c.batch_size * info.world_size
            if left_out:
                log.info("each epoch uses %d full batches; %d shuffled examples wait for the next epoch",
                         per_epoch, left_out)
        sink = MetricsSink(out_dir, c.tensorboard) if info.is_main else None
        bar = tqdm(total=c.max_steps, initial=step, disable=not (c.progress and info.is_main),
                   desc="train", dynamic_ncols=True)
        amp_dtype = torch.bfloat16 if c.autocast == "bf16" else torch.float16

        def autocast():
            return torch.autocast(device.type, dtype=amp_dtype) if c.autocast != "no" else contextlib.nullcontext()

        def save(final: bool = False) -> Path:
            rng_all = gather_objects(ckpt_io.capture_rng(generator), info)
            path = ckpt_dir / f"step-{step:08d}.pt"
            if info.is_main:
                state = ckpt_io.make_checkpoint(
                    model, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict(), rng=rng_all, train_config=to_dict(c),
                    trainer={"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch})
                ckpt_io.atomic_save(state, path)
                ckpt_io.prune_checkpoints(ckpt_dir, c.keep_last)
                if final:
                    ckpt_io.atomic_save(ckpt_io.make_checkpoint(model, train_config=to_dict(c)), out_dir / "model.pt")
            barrier(info)
            return path

        history: list[dict] = []
        window: dict[str, float] = {}
        monitor: dict[str, float] = {}  # rank 0's latest collapse stats, logged with the next record
        window_steps, window_examples, window_start = 0, 0, time.perf_counter()
        batches = self._batches(train_data, collate, info, epoch, batch_in_epoch)
        last_ckpt: Path | None = None
        interrupted = False
        with _StopRequest() as stop:
            while step < c.max_steps:
                train_model.train()
                batch = None
                for micro in range(c.grad_accum_steps):
                    epoch, index, batch = next(batches)
                    batch_in_epoch = index + 1
                    batch = move_to(batch, device)
                    sync = micro == c.grad_accum_steps - 1 or not info.enabled
                    with (contextlib.nullcontext() if sync else train_model.no_sync()), autocast():
                        out = train_model(batch)
                    scaler.scale(out["loss"] / c.grad_accum_steps).backward()
                    for key, value in out.items():
                        if isinstance(value, torch.Tensor) and value.numel() == 1:
                            window[key] = window.get(key, 0.0) + float(value.detach()) / c.grad_accum_steps
                    window_examples += batch_size_of(batch)
                if not math.isfinite(window["loss"]) and c.autocast != "fp16":
                    parts = {k: v for k, v in window.items() if k.endswith("/loss")}
                    raise FloatingPointError(f"loss is not finite at step {step + 1}: {parts}; "
                                             f"last checkpoint: {last_ckpt}")
                scaler.unscale_(optimizer)
                grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
                             if c.max_grad_norm > 0 else torch.tensor(0.0))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                window["grad_norm"] = window.get("grad_norm", 0.0) + float(grad_norm)
                window_steps += 1
                bar.update(1)

                if c.monitor_every and step % c.monitor_every == 0:
                    monitor = {f"monitor/{k}": v for k, v in collapse_stats(model.embed(batch)).items()}
                if step % c.log_every == 0 or step == c.max_steps:
                    names = sorted(window)
                    values = all_reduce_mean(torch.tensor([window[k] for k in names], dtype=torch.float64), info)
                    elapsed = time.perf_counter() - window_start
                    record = {"step": step, "epoch": epoch, **{k: float(v) / window_steps for k, v in zip(names, values)},
                              "lr": scheduler.get_last_lr()[0],
                              "examples_per_s": window_examples * info.world_size / max(elapsed, 1e-9), **monitor}
                    history.append(record)
                    if sink:
                        sink.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", ex_s=f"{record['examples_per_s']:.1f}")
                    if record.get("monitor/std_mean", 1.0) < 1e-4:
                        log.warning("step %d: pooled embeddings look collapsed (per-dim std %.2e)",
                                    step, record["monitor/std_mean"])
                    window, monitor, window_steps, window_examples = {}, {}, 0, 0
                    window_start = time.perf_counter()
                if val_data is not None and ((c.eval_every and step % c.eval_every == 0) or step == c.max_steps):
                    val = self.evaluate(model, val_data, collate, device, autocast)
                    val = {f"val/{k}": v for k, v in val.items()}
                    history.append({"step": step, **val})
                    if sink:
                        sink.write({"step": step, **val})
                stop_now = stop.signum is not None
                if info.enabled:  # every rank must agree to stop at the same step
                    stop_now = bool(all_reduce_mean(torch.tensor([float(stop_now)]), info)[0] > 0)
                if step % c.checkpoint_every == 0 or stop_now or step == c.max_steps:
                    last_ckpt = save(final=step == c.max_steps)
                if stop_now:
                    interrupted = True
                    if info.is_main:
                        log.warning("stopped by signal at step %d; checkpoint saved to %s; run again to resume",
                                    step, last_ckpt)
                    break
        bar.close()
        if sink:
            sink.close()
        if not interrupted and info.is_main and not (out_dir / "model.pt").exists():
            # a run that had already reached max_steps but died before writing model.pt
            ckpt_io.atomic_save(ckpt_io.make_checkpoint(model, train_config=to_dict(c)), out_dir / "model.pt")
        final = out_dir / "model.pt" if not interrupted else last_ckpt
        return TrainResult(step=step, output_dir=out_dir, checkpoint=final, history=history, interrupted=interrupted)

    @torch.no_grad()
    def evaluate(self, model: SSLModel, data, collate, device=None, autocast=None) -> dict[str, float]:
        """Mean objective metrics over `data` with a fixed-seed generator (training RNG untouched)."""
        device = device or next(model.parameters()).device
        saved = [o.generator for o in model.objectives.values()]
        model.set_generator(torch.Generator(device=device).manual_seed(12345))
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        n = 0
        try:
            loader = DataLoader(data, batch_size=self.config.batch_size, collate_fn=collate, shuffle=False)
            for batch in loader:
                with autocast() if autocast else contextlib.nullcontext():
                    out = model(move_to(batch, device))
                for key, value in out.items():
                    if isinstance(value, torch.Tensor) and value.numel() == 1:
                        totals[key] = totals.get(key, 0.0) + float(value)
                n += 1
        finally:
            for o, g in zip(model.objectives.values(), saved):
                o.generator = g
            model.train(was_training)
        return {k: v / max(n, 1) for k, v in totals.items()}
