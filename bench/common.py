"""Shared helpers for the benchmarks: machine facts, fp32 matmul peak, step clocks, medians, JSON, tables.

Every benchmark measures its references in the same process and run as the thing it measures,
alternating variants in rounds, and reports medians; these helpers keep that uniform.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


# ---- machine ------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """Facts about the machine and software that a reader needs to compare numbers."""
    import transformers

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.cuda.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average": load_average(),
    }


# ---- statistics ---------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def summary(values: Sequence[float]) -> dict:
    """Median, min, max and the samples themselves."""
    return {
        "median": median(values),
        "min": float(min(values)),
        "max": float(max(values)),
        "samples": [float(v) for v in values],
    }


# ---- timing -------------------------------------------------------------------------------------
class StepClock:
    """Timestamps at one fixed point of a training loop (e.g. right after each optimizer step).

    `mark()` at that point every step (and once before the first step); `rate(first, n)` is steps/s over
    the n steps that follow mark number `first`, i.e. between two marks n steps apart, so every step
    period contains exactly one of everything the loop does (data, forward, backward, optimizer, logging).
    """

    def __init__(self) -> None:
        self.marks: list[float] = []

    def mark(self) -> None:
        self.marks.append(time.perf_counter())

    def seconds(self, first: int, n: int) -> float:
        if first + n >= len(self.marks):
            raise ValueError(f"need {first + n + 1} marks, have {len(self.marks)}")
        return self.marks[first + n] - self.marks[first]

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


class ForeignCPU:
    """CPU time other processes used while a block ran (from /proc/stat minus our own `os.times`).

    On a 2-core machine one busy neighbour halves a benchmark's speed; recording this per sample tells a
    disturbed sample from a slow one. `fraction` is foreign CPU seconds / (wall seconds x CPUs).
    Linux only; elsewhere both stay None.
    """

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.fraction: float | None = None

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self._start = (self._busy(), self._own(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy, own, wall = self._busy(), self._own(), time.perf_counter()
        if busy is None or self._start[0] is None:
            return
        self.seconds = max(0.0, (busy - self._start[0]) - (own - self._start[1]))
        self.fraction = self.seconds / max(1e-9, (wall - self._start[2]) * (os.cpu_count() or 1))


def matmul_peak(sizes: Sequence[int] = (2048,), repeats: int = 8, dtype=torch.float32) -> dict:
    """Best achieved FLOP/s of `torch.mm` on square matrices with the current thread count.

    2*n^3 FLOPs per product; best of `repeats` after one warm-up product, for each size; the peak is
    the best over sizes. An attainable peak for dense fp32 GEMM on this machine, not the data-sheet one.
    """
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        out = torch.empty(n, n, dtype=dtype)
        torch.mm(a, b, out=out)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - t0)
        per_size[str(n)] = {"best_s": min(times), "median_s": median(times), "flops_per_s": 2.0 * n**3 / min(times)}
        del a, b, out
    best = max(per_size.values(), key=lambda r: r["flops_per_s"])
    return {
        "flops_per_s": best["flops_per_s"],
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "sizes": per_size,
    }


# ---- data ---------------------------------------------------------------------------------------
class TensorRows(torch.utils.data.Dataset):
    """A map-style dataset over equally long tensors: item i is {name: tensor[i]}."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        lengths = {len(v) for v in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors differ in length: { {k: len(v) for k, v in tensors.items()} }")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def stack_collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack equally shaped items (rows of `TensorRows`) into a batch."""
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


# ---- output -------------------------------------------------------------------------------------
def write_json(path: str | Path, data: dict) -> Path:
    """Write `data` as indented JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A plain-text table; `align` is one char per column, 'l' or 'r' (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=False))

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    return "\n".join([lines[0], lines[1], *(fmt(r) for r in cells[1:])])


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """1.23e11 -> '123 G' (+unit)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}".rstrip()


def parse_round_args(doc: str, name: str, full: dict, quick: dict, argv=None):
    """Arguments shared by the alternating-rounds benchmarks: --steps, --warmup, --repeats, --quick, --out.

    `full`/`quick`: defaults {"steps", "warmup", "repeats"}; `args.out` defaults to bench/results/<name>.json
    (a quick run writes to the temp dir instead).
    """
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for key, help_text in (
        ("steps", "timed steps per sample"),
        ("warmup", "untimed steps first"),
        ("repeats", "rounds of all variants"),
    ):
        p.add_argument(
            f"--{key}", type=int, default=None, help=f"{help_text} (default {full[key]}; quick {quick[key]})"
        )
    p.add_argument("--quick", action="store_true", help="smoke run; JSON goes to the temp dir")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    for key in ("steps", "warmup", "repeats"):
        if getattr(args, key) is None:
            setattr(args, key, (quick if args.quick else full)[key])
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "ssl_modal_bench" / f"{name}_quick.json"
            if args.quick
            else RESULTS / f"{name}.json"
        )
    return args


def run_rounds(runners: dict, ctx, args, prefix: str) -> tuple[dict, dict]:
    """Alternate the variants (a, b, ..., a, b, ...) `args.repeats` times; each sample times `args.steps` steps
    after `args.warmup`. Returns ({variant: [s/step per round]}, {variant: [other processes' CPU share]})."""
    import shutil
    import tempfile

    total = args.warmup + args.steps
    samples = {v: [] for v in runners}
    foreign = {v: [] for v in runners}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for rnd in range(args.repeats):
            for v, runner in runners.items():
                run_dir = Path(tmp) / f"{v}{rnd}"
                with ForeignCPU() as busy:
                    clock = runner(ctx, total, run_dir)
                shutil.rmtree(run_dir, ignore_errors=True)
                samples[v].append(clock.seconds(args.warmup, args.steps) / args.steps)
                foreign[v].append(None if busy.fraction is None else round(busy.fraction, 3))
                print(
                    f"  round {rnd + 1}/{args.repeats} {v}: {samples[v][-1]:.4f} s/step, other processes' CPU "
                    f"{'?' if busy.fraction is None else f'{busy.fraction:.0%}'}",
                    flush=True,
                )
    return samples, foreign


def speed_ratios(targets: dict[str, float], samples: dict[str, list[float]]) -> dict:
    """Speed ratios named "num/den" (how many times faster variant num runs than den) from per-round seconds per
    step: the ratio of medians as the value, checked against its target, and the ratio within each round."""
    ratios = {}
    for name, target in targets.items():
        num, den = name.split("/")
        value = median(samples[den]) / median(samples[num])
        ratios[name] = {
            "value": value,
            "target": target,
            "met": value >= target,
            "per_round": [d / n for n, d in zip(samples[num], samples[den], strict=True)],
        }
    return ratios


def start_run(quick: bool) -> tuple[dict, dict, list[dict]]:
    """Print the machine and measure the matmul peak once at the start: (machine, peak_args, [peak])."""
    machine = machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads, "
        f"load {machine['load_average']}"
    )
    peak_args = {"sizes": (2048,) if quick else (2048, 4096), "repeats": 4 if quick else 6}
    return machine, peak_args, [matmul_peak(**peak_args)]
