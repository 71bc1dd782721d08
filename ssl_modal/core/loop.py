"""Small pieces of the training loop: LR schedule, wall-clock budget, clean stop on signals, seeding."""

from __future__ import annotations

import math
import random
import signal
import time
from collections.abc import Callable

import numpy as np
import torch


def warmup_cosine(warmup: int, total: int, min_ratio: float, time_progress: Callable[[], float] | None = None):
    """LR multiplier: linear warmup to 1 over `warmup` steps, then cosine down to `min_ratio`.

    Cosine progress is the step's share of `total`, or `time_progress()` (share of a wall-clock budget)
    when that is further along, so a run cut by `train.max_minutes` still ends at the low learning rate.
    """

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if time_progress is not None:
            progress = max(progress, time_progress())
        progress = min(1.0, progress)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class TimeBudget:
    """Wall-clock time spent training, carried across resumes (`elapsed_s` in the checkpoint)."""

    def __init__(self, minutes: float, elapsed_before: float = 0.0) -> None:
        self.seconds = 60.0 * minutes
        self.elapsed_before = elapsed_before
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def progress(self) -> float:
        return self.elapsed() / self.seconds if self.seconds else 0.0

    def spent(self) -> bool:
        return bool(self.seconds) and self.elapsed() >= self.seconds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and returns."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

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
