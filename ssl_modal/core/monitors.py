"""Collapse monitors on pooled embeddings and the metrics sink (JSONL + TensorBoard when installed)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch


def collapse_stats(pooled: torch.Tensor) -> dict[str, float]:
    """Per-dimension std (mean and min over dims) and effective rank of a (B, D) batch of embeddings.

    Effective rank = exp(entropy of the normalised singular values) of the centred batch
    (Roy & Vetterli 2007): D for isotropic embeddings, 1 when everything lies on a line, ~0 for a
    single point. A collapsed encoder shows std -> 0 or effective rank -> 1.
    """
    x = pooled.detach().float()
    if x.shape[0] < 2:
        return {}
    std = x.std(dim=0)
    centred = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(centred)
    total = s.sum()
    if total <= 1e-12:
        eff_rank = 0.0
    else:
        p = s / total
        p = p[p > 0]
        eff_rank = math.exp(float(-(p * p.log()).sum()))
    return {"std_mean": float(std.mean()), "std_min": float(std.min()), "effective_rank": eff_rank}


_warned: set[str] = set()


def _warn_no_tensorboard() -> None:
    """Said once per process: train.tensorboard is on but the package is missing (metrics.jsonl still written)."""
    if "tensorboard" not in _warned:
        _warned.add("tensorboard")
        logging.getLogger("ssl_modal").warning(
            "train.tensorboard is true but TensorBoard is not installed: only metrics.jsonl is written; "
            "pip install 'ssl-modal[tensorboard]' or set train.tensorboard: false"
        )


class MetricsSink:
    """Appends one JSON object per call to `metrics.jsonl`; mirrors scalars to TensorBoard if installed."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

                self._tb = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))
            except ImportError:
                self._tb = None
                _warn_no_tensorboard()

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def truncate_metrics(output_dir: str | Path, step: int) -> int:
    """Drop the records after `step` from metrics.jsonl (a resumed run repeats them); returns how many.

    Written to a temp file and moved into place, so a crash leaves the old log or the new one.
    """
    path = Path(output_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keep = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(keep) == len(lines):
        return 0
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    tmp.replace(path)
    return len(lines) - len(keep)


def read_metrics(output_dir: str | Path) -> list[dict]:
    """All records of a run's metrics.jsonl (for plots and tests)."""
    path = Path(output_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_records(output_dir: str | Path) -> list[dict]:
    """Training records (those with "loss") of the latest run in `output_dir`.

    A run restarted from an earlier step (or from step 0 in the same folder) replaces the records it repeats.
    """
    records: list[dict] = []
    for record in read_metrics(output_dir):
        if "loss" not in record:
            continue
        if records and record["step"] <= records[-1]["step"]:
            records = [r for r in records if r["step"] < record["step"]]
        records.append(record)
    return records
