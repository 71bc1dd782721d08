"""One trainer for every domain: `Trainer(config).fit(model, train_data, collate, val_data=None)`."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import checkpoint as ckpt_io
from .config import to_dict
from .contract import SSLModel, batch_size_of, move_to
from .distributed import DistInfo, ShardedEpochSampler, all_reduce_mean, barrier, gather_objects
from .loop import StopRequest, TimeBudget
from .monitors import MetricsSink, collapse_stats
from .train_config import TrainConfig, TrainResult
from .train_setup import Run, start_run

log = logging.getLogger("ssl_modal")


class Trainer:
    """AdamW + warmup/cosine, clipping, accumulation, autocast, seeded generators, progress bar,
    JSONL metrics, collapse monitors, atomic checkpoints, exact resume, clean stop on signals, DDP,
    a wall-clock budget, early stopping, and a saved last good state when a step raises."""

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    # ---- set-up -------------------------------------------------------------------------------
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
            loader = DataLoader(
                data,
                batch_size=c.batch_size,
                sampler=sampler,
                collate_fn=collate,
                num_workers=c.num_workers,
                drop_last=True,
                generator=torch.Generator().manual_seed(c.seed + epoch),
            )
            for i, batch in enumerate(loader, start=start_batch):
                yield epoch, i, batch
            epoch, start_batch = epoch + 1, 0

    # ---- the loop -----------------------------------------------------------------------------
    def fit(self, model: SSLModel, train_data, collate, val_data=None) -> TrainResult:
        c = self.config
        run = start_run(c, model, train_data, val_data)
        info, state, budget, out_dir = run.info, run.state, run.budget, run.out_dir
        sink = MetricsSink(out_dir, c.tensorboard) if info.is_main else None
        bar = tqdm(
            total=c.max_steps,
            initial=state["step"],
            disable=not (c.progress and info.is_main),
            desc="train",
            dynamic_ncols=True,
        )
        amp_dtype = torch.bfloat16 if run.precision == "bf16" else torch.float16

        def autocast():
            return (
                torch.autocast(run.device.type, dtype=amp_dtype) if run.precision != "no" else contextlib.nullcontext()
            )

        history: list[dict] = []
        window: dict[str, float] = {}
        monitor: dict[str, float] = {}  # rank 0's latest collapse stats, logged with the next record
        window_steps, window_examples, window_start = 0, 0, time.perf_counter()
        batches = self._batches(train_data, collate, info, state["epoch"], state["batch_in_epoch"])
        last_ckpt: Path | None = None
        interrupted = early_stopped = False
        with StopRequest() as stop:
            while state["step"] < c.max_steps:
                grad_norm, batch, examples = self._train_step(run, model, batches, window, autocast)
                window_examples += examples
                step = state["step"]
                window["grad_norm"] = window.get("grad_norm", 0.0) + float(grad_norm)
                window_steps += 1
                bar.update(1)

                if c.monitor_every and step % c.monitor_every == 0 and batch is not None:
                    monitor = {f"monitor/{k}": v for k, v in collapse_stats(model.embed(batch)).items()}
                if step % c.log_every == 0 or step == c.max_steps:
                    elapsed = time.perf_counter() - window_start
                    record = self._record(run, window, window_steps, window_examples, elapsed, monitor)
                    history.append(record)
                    if sink:
                        sink.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", ex_s=f"{record['examples_per_s']:.1f}")
                    if record.get("monitor/std_mean", 1.0) < 1e-4:
                        log.warning(
                            "step %d: pooled embeddings look collapsed (per-dim std %.2e)",
                            step,
                            record["monitor/std_mean"],
                        )
                    window, monitor, window_steps, window_examples = {}, {}, 0, 0
                    window_start = time.perf_counter()
                if val_data is not None and ((c.eval_every and step % c.eval_every == 0) or step == c.max_steps):
                    val = {
                        f"val/{k}": v for k, v in self.evaluate(model, val_data, collate, run.device, autocast).items()
                    }
                    history.append({"step": step, **val})
                    if sink:
                        sink.write({"step": step, **val})
                    early_stopped = self._early_stopping(model, out_dir, state, val.get("val/loss"), info)
                stop_now = stop.signum is not None
                out_of_time = budget.spent()
                if info.enabled:  # every rank must agree to stop at the same step
                    flags = all_reduce_mean(
                        torch.tensor([float(stop_now), float(out_of_time), float(early_stopped)]), info
                    )
                    stop_now, out_of_time, early_stopped = (bool(f > 0) for f in flags)
                finished = step == c.max_steps or out_of_time or early_stopped
                if step % c.checkpoint_every == 0 or stop_now or finished:
                    last_ckpt = self._save(run, model, final=finished)
                if out_of_time and step < c.max_steps and info.is_main:
                    log.info(
                        "train.max_minutes=%g reached at step %d (%.1f min): model saved",
                        c.max_minutes,
                        step,
                        budget.elapsed() / 60,
                    )
                if early_stopped and info.is_main:
                    log.info(
                        "early stopping at step %d: val/loss did not improve in %d evaluations; "
                        "model.pt holds the best weights (val/loss %.4f)",
                        step,
                        c.early_stopping_patience,
                        state["best_val"],
                    )
                if stop_now and not finished:
                    interrupted = True
                    if info.is_main:
                        log.warning(
                            "stopped by signal at step %d; checkpoint saved to %s; run again to resume", step, last_ckpt
                        )
                if stop_now or finished:
                    break
        bar.close()
        if sink:
            sink.close()
        if not interrupted and info.is_main and not (out_dir / "model.pt").exists():
            # a run that had already reached max_steps but died before writing model.pt
            self._write_final(model, out_dir, state["step"])
        final = out_dir / "model.pt" if not interrupted else last_ckpt
        return TrainResult(
            step=state["step"], output_dir=out_dir, checkpoint=final, history=history, interrupted=interrupted
        )

    def _train_step(self, run: Run, model: SSLModel, batches, window: dict, autocast) -> tuple[Any, Any, int]:
        """One optimiser step over grad_accum_steps micro-batches; sums scalar outputs into `window`. Returns
        (grad norm, last micro-batch, examples). When the forward/backward raises after step 0 (single
        process), the state before this step is saved first, so a rerun resumes from the last good weights."""
        c, state, optimizer, scaler = self.config, run.state, run.optimizer, run.scaler
        run.train_model.train()
        batch = None
        examples = 0
        rng_before = ckpt_io.capture_rng(run.generator) if not run.info.enabled else None
        position_before = (state["epoch"], state["batch_in_epoch"])
        phase = "forward"
        try:
            for micro in range(c.grad_accum_steps):
                state["epoch"], index, batch = next(batches)
                state["batch_in_epoch"] = index + 1
                batch = move_to(batch, run.device)
                sync = micro == c.grad_accum_steps - 1 or not run.info.enabled
                with contextlib.nullcontext() if sync else cast(Any, run.train_model).no_sync(), autocast():
                    out = run.train_model(batch)
                scaler.scale(out["loss"] / c.grad_accum_steps).backward()
                for key, value in out.items():
                    if isinstance(value, torch.Tensor) and value.numel() == 1:
                        share = 1.0 if key.endswith("real_tokens") else 1.0 / c.grad_accum_steps
                        window[key] = window.get(key, 0.0) + float(value.detach()) * share
                examples += batch_size_of(batch)
            if not math.isfinite(window["loss"]) and run.precision != "fp16":
                parts = {k: v for k, v in window.items() if k.endswith("/loss")}
                raise FloatingPointError(f"loss is not finite at step {state['step'] + 1}: {parts}")
            scaler.unscale_(optimizer)
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
                if c.max_grad_norm > 0
                else torch.tensor(0.0)
            )
            phase = "update"
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            run.scheduler.step()
            state["step"] += 1
            model.on_step_end(state["step"], self._expected_steps(state["step"], run.budget))
        except Exception as exc:
            if phase == "forward" and not run.info.enabled and state["step"] > 0:
                optimizer.zero_grad(set_to_none=True)
                saved = self._save(run, model, rng=rng_before, position=position_before)
                log.error(
                    "step %d failed; the last good state (after step %d) is saved in %s",
                    state["step"] + 1,
                    state["step"],
                    saved,
                )
                if hasattr(exc, "add_note"):  # Python >= 3.11
                    exc.add_note(f"last good state saved: {saved} (rerun to resume from it)")
            raise
        return grad_norm, batch, examples

    def _save(self, run: Run, model: SSLModel, final: bool = False, rng=None, position=None) -> Path:
        """Atomic checkpoint of the whole run (every rank's RNG gathered); model.pt too when `final`."""
        rng_all = gather_objects(rng or ckpt_io.capture_rng(run.generator), run.info)
        trainer_state = {**run.state, "elapsed_s": run.budget.elapsed()}
        if position is not None:
            trainer_state["epoch"], trainer_state["batch_in_epoch"] = position
        path = run.ckpt_dir / f"step-{run.state['step']:08d}.pt"
        if run.info.is_main:
            checkpoint = ckpt_io.make_checkpoint(
                model,
                optimizer=run.optimizer.state_dict(),
                scheduler=run.scheduler.state_dict(),
                scaler=run.scaler.state_dict(),
                rng=rng_all,
                train_config=to_dict(self.config),
                trainer=trainer_state,
            )
            ckpt_io.atomic_save(checkpoint, path)
            ckpt_io.prune_checkpoints(run.ckpt_dir, self.config.keep_last)
            if final:
                self._write_final(model, run.out_dir, run.state["step"])
        barrier(run.info)
        return path

    def _expected_steps(self, step: int, budget: TimeBudget) -> int:
        """Steps the run will make: max_steps, or fewer when train.max_minutes will stop it first (estimated
        from the pace so far), so schedules driven by `on_step_end` (BYOL's EMA) end with the run."""
        c = self.config
        progress = budget.progress() if c.max_minutes else 0.0
        if progress <= 0:
            return c.max_steps
        return max(step, min(c.max_steps, int(step / progress)))

    def _record(self, run: Run, window, window_steps, window_examples, elapsed, monitor) -> dict:
        """One metrics.jsonl record: window means (sums for *real_tokens), rates, time stamps, monitors."""
        state, info = run.state, run.info
        names = sorted(window)
        values = all_reduce_mean(torch.tensor([window[k] for k in names], dtype=torch.float64), info)
        record: dict = {"step": state["step"], "epoch": state["epoch"]}
        for key, value in zip(names, values, strict=True):
            if key.endswith("real_tokens"):
                record[f"{key}_per_s"] = float(value) * info.world_size / max(elapsed, 1e-9)
            else:
                record[key] = float(value) / window_steps
        record.update(
            {
                "lr": run.scheduler.get_last_lr()[0],
                "examples_per_s": window_examples * info.world_size / max(elapsed, 1e-9),
                "steps_per_s": window_steps / max(elapsed, 1e-9),
                "time": time.time(),
                "elapsed_s": run.budget.elapsed(),
                **monitor,
            }
        )
        return record

    def _early_stopping(self, model, out_dir: Path, state: dict, val_loss, info) -> bool:
        """Keep the best weights in best.pt; True once val/loss has not improved for `patience` evaluations."""
        patience = self.config.early_stopping_patience
        if not patience or val_loss is None:
            return False
        if val_loss < state["best_val"]:
            state["best_val"], state["bad_evals"] = float(val_loss), 0
            if info.is_main:
                ckpt_io.atomic_save(
                    ckpt_io.make_checkpoint(model, train_config=to_dict(self.config), trainer={"step": state["step"]}),
                    out_dir / "best.pt",
                )
            return False
        state["bad_evals"] += 1
        return state["bad_evals"] >= patience

    def _write_final(self, model: SSLModel, out_dir: Path, step: int) -> None:
        """model.pt: the final weights, or the best ones when early stopping kept a best.pt (and its step)."""
        best = out_dir / "best.pt"
        if self.config.early_stopping_patience and best.exists():
            saved = ckpt_io.load_checkpoint(best)
            model.load_state_dict(saved["model"])
            step = saved["trainer"]["step"]
        ckpt_io.atomic_save(
            ckpt_io.make_checkpoint(model, train_config=to_dict(self.config), step=step), out_dir / "model.pt"
        )

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
            for o, g in zip(model.objectives.values(), saved, strict=True):
                o.generator = g
            model.train(was_training)
        return {k: v / max(n, 1) for k, v in totals.items()}
