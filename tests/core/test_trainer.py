"""The shared trainer: learning, exact resume after SIGKILL/SIGTERM, corrupt checkpoints, monitors."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssl_modal import TrainConfig, Trainer
from ssl_modal.core.checkpoint import CheckpointError, load_checkpoint, step_checkpoints
from ssl_modal.core.monitors import collapse_stats, read_metrics
from ssl_modal.vectors import build_vector_model, collate_vectors
from tests.core.train_toy import toy_data

REPO = Path(__file__).resolve().parents[2]


def run_toy(out, steps=60, batch=16, delay=0.0, wait=True):
    cmd = [sys.executable, "-m", "tests.core.train_toy", str(out), str(steps), str(batch), str(delay)]
    if wait:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def final_weights(out):
    return load_checkpoint(Path(out) / "model.pt")["model"]


def wait_for_checkpoint(out, step, proc, timeout=120):
    target = Path(out) / "checkpoints" / f"step-{step:08d}.pt"
    start = time.time()
    while not target.exists():
        assert proc.poll() is None, f"training ended before step {step}: {proc.communicate()}"
        assert time.time() - start < timeout, "no checkpoint in time"
        time.sleep(0.01)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"weights differ at {key}")


def test_loss_decreases_and_metrics_are_logged(tmp_path):
    torch.manual_seed(0)
    model = build_vector_model({"dim": 16})
    cfg = TrainConfig(
        output_dir=str(tmp_path),
        max_steps=50,
        batch_size=32,
        learning_rate=3e-3,
        warmup_steps=5,
        log_every=5,
        monitor_every=10,
        progress=False,
        tensorboard=False,
        checkpoint_every=25,
    )
    result = Trainer(cfg).fit(model, toy_data(), collate_vectors)
    records = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert [r["step"] for r in records] == list(range(5, 55, 5))
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    assert {"masked/loss", "lr", "examples_per_s", "grad_norm"} <= records[0].keys()
    assert "monitor/effective_rank" in records[1]
    assert result.checkpoint == tmp_path / "model.pt" and result.step == 50
    assert [p.name for p in step_checkpoints(tmp_path / "checkpoints")] == ["step-00000050.pt", "step-00000025.pt"]


def test_grad_accumulation_matches_big_batch(tmp_path):
    """2 micro-batches of 16 give the same update as one batch of 32 (deterministic objective)."""
    weights = []
    for name, batch, accum in (("big", 32, 1), ("accum", 16, 2)):
        torch.manual_seed(0)
        model = build_vector_model({"dim": 16, "objectives": {"reconstruct": 1.0}})
        cfg = TrainConfig(
            output_dir=str(tmp_path / name),
            max_steps=5,
            batch_size=batch,
            grad_accum_steps=accum,
            progress=False,
            tensorboard=False,
            monitor_every=0,
            warmup_steps=1,
        )
        Trainer(cfg).fit(model, toy_data(), collate_vectors)
        weights.append(model.state_dict())
    # batch order differs (32 vs 2x16 from the same permutation are the same examples)
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-4, atol=1e-5)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    ref = run_toy(tmp_path / "ref", steps=60)
    assert ref.returncode == 0, ref.stderr
    proc = run_toy(tmp_path / "killed", steps=60, delay=0.02, wait=False)
    wait_for_checkpoint(tmp_path / "killed", 30, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model.pt").exists(), "run finished before it was killed"
    resumed = run_toy(tmp_path / "killed", steps=60)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(final_weights(tmp_path / "ref"), final_weights(tmp_path / "killed"))


def test_sigterm_saves_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = run_toy(out, steps=200, delay=0.02, wait=False)
    wait_for_checkpoint(out, 10, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted=True" in stdout
    assert "stopped by signal" in stderr
    saved = load_checkpoint(step_checkpoints(out / "checkpoints")[0])
    assert 10 <= saved["trainer"]["step"] < 200
    finished = run_toy(out, steps=200)
    assert finished.returncode == 0 and "done step=200" in finished.stdout, finished.stderr


def test_corrupt_newest_checkpoint_is_skipped_with_message(tmp_path):
    out = tmp_path / "run"
    first = run_toy(out, steps=30)
    assert first.returncode == 0, first.stderr
    newest = step_checkpoints(out / "checkpoints")[0]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash mid-copy
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(newest)
    (out / "model.pt").unlink()
    first_log = read_metrics(out)
    again = run_toy(out, steps=40)
    assert again.returncode == 0, again.stderr
    assert "skipping unusable checkpoint" in again.stderr and newest.name in again.stderr
    steps = [r["step"] for r in read_metrics(out)]
    assert steps == list(range(1, 41)), "the log holds each step once: steps 21-30 of the first run were dropped"
    assert read_metrics(out)[:20] == first_log[:20], "second run must resume after step 20, not restart"
    assert load_checkpoint(out / "model.pt")["train_config"]["max_steps"] == 40


def test_resume_refuses_checkpoint_of_another_model(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=3, batch_size=8, progress=False, tensorboard=False)
    Trainer(cfg).fit(build_vector_model({"dim": 16}), toy_data(), collate_vectors)
    other = build_vector_model({"dim": 16, "hidden": 32})
    cfg.max_steps = 6
    with pytest.raises(CheckpointError, match="holds a different model"):
        Trainer(cfg).fit(other, toy_data(), collate_vectors)


def test_bad_training_setups_have_clear_errors(tmp_path):
    model = build_vector_model({"dim": 16})
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=3, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(cfg).fit(model, toy_data(n=10), collate_vectors)
    with pytest.raises(ValueError, match="empty"):
        Trainer(cfg).fit(model, [], collate_vectors)
    with pytest.raises(ValueError, match="autocast"):
        TrainConfig(autocast="fp32")


def test_bf16_autocast_trains_on_cpu(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(
        output_dir=str(tmp_path),
        max_steps=20,
        batch_size=32,
        autocast="bf16",
        learning_rate=3e-3,
        progress=False,
        tensorboard=False,
        log_every=10,
    )
    result = Trainer(cfg).fit(build_vector_model({"dim": 16}), toy_data(), collate_vectors)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_collapse_stats_detect_collapse():
    healthy = collapse_stats(torch.randn(256, 8))
    assert healthy["effective_rank"] > 6 and healthy["std_mean"] > 0.8
    collapsed = collapse_stats(torch.ones(256, 8) + 1e-9 * torch.randn(256, 8))
    assert collapsed["std_mean"] < 1e-6
    line = collapse_stats(torch.randn(256, 1) * torch.ones(1, 8))
    assert line["effective_rank"] == pytest.approx(1.0, abs=1e-3)


def test_rerun_of_finished_run_restores_missing_model_file(tmp_path):
    first = run_toy(tmp_path, steps=20)
    assert first.returncode == 0, first.stderr
    before = final_weights(tmp_path)
    (tmp_path / "model.pt").unlink()  # as if killed between the last checkpoint and model.pt
    again = run_toy(tmp_path, steps=20)
    assert again.returncode == 0 and "done step=20" in again.stdout, again.stderr
    assert_same_weights(before, final_weights(tmp_path))
