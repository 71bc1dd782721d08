"""Which autocast precision a run uses: `train.autocast: auto` picks bf16 only where the hardware runs it fast.

On CPUs without native bf16 (no AVX512-BF16 / AMX) bf16 matrix products are emulated and far slower than
fp32 (measured on a 2-core AMD EPYC with AVX2 only: 0.26 GFLOP/s in bf16 against 14.6 in fp32), so `auto`
falls back to fp32 there and says so in the log. With AVX512-BF16 (another 2-core EPYC) bf16 ran the matmul
peak at 4.4x fp32 and a Trainer MLM step at 1.86x (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger("ssl_modal")

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_autocast(setting: str, device: torch.device, flags: set[str] | None = None) -> tuple[str, str]:
    """(precision to use: "no" | "bf16" | "fp16", a one-line reason for the log) for `train.autocast`."""
    if setting != "auto":
        return setting, f"train.autocast={setting} as configured"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "train.autocast=auto: bf16 (the GPU supports it)"
        return "fp16", "train.autocast=auto: fp16 (the GPU has no bf16)"
    if cpu_has_native_bf16(flags):
        return "bf16", "train.autocast=auto: bf16 (the CPU has native bf16: AVX512-BF16/AMX)"
    return "no", (
        "train.autocast=auto: fp32 (this CPU has no native bf16 instructions; bf16 would be emulated and slower)"
    )
