"""train.autocast=auto: bf16 only where the CPU has native bf16, with a log line saying what was chosen."""

import logging

import torch

from ssl_modal import TrainConfig, Trainer
from ssl_modal.core.precision import cpu_flags, cpu_has_native_bf16, resolve_autocast
from ssl_modal.vectors import build_vector_model, collate_vectors
from tests.core.train_toy import toy_data


def test_auto_picks_bf16_only_with_native_cpu_support(tmp_path):
    cpu = torch.device("cpu")
    assert resolve_autocast("auto", cpu, {"avx2", "avx512f", "avx512_bf16"})[0] == "bf16"
    assert resolve_autocast("auto", cpu, {"avx2", "amx_bf16"})[0] == "bf16"
    precision, reason = resolve_autocast("auto", cpu, {"avx2", "avx512f"})
    assert precision == "no" and "no native bf16" in reason
    assert resolve_autocast("bf16", cpu, set())[0] == "bf16"  # an explicit choice is kept
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "avx512_bf16"} and cpu_has_native_bf16(cpu_flags(info))
    assert cpu_flags(tmp_path / "missing") == set()


def test_trainer_logs_the_precision_it_uses(tmp_path, caplog):
    cfg = TrainConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        batch_size=16,
        autocast="auto",
        progress=False,
        tensorboard=False,
        monitor_every=0,
        log_every=1,
    )
    with caplog.at_level(logging.INFO, logger="ssl_modal"):
        Trainer(cfg).fit(build_vector_model({"dim": 16}), toy_data(), collate_vectors)
    expected = resolve_autocast("auto", torch.device("cpu"))[1]
    assert any(rec.getMessage() == f"precision: {expected}" for rec in caplog.records)
