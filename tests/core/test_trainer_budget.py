"""Trainer: wall-clock budget, time stamps and rates in metrics.jsonl, clean logs after resume, the last good
state saved when a step raises, early stopping, per-prefix learning rates, numeric config validation."""

import json
import time

import numpy as np
import pytest
import torch

from ssl_modal import SSLModel, TrainConfig, Trainer
from ssl_modal.core.checkpoint import load_checkpoint, step_checkpoints
from ssl_modal.core.config import ConfigError, from_dict
from ssl_modal.core.contract import Objective
from ssl_modal.core.monitors import read_metrics
from ssl_modal.core.train_setup import build_optimizer
from ssl_modal.vectors import build_vector_model, collate_vectors
from tests.core.train_toy import toy_data


def config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        max_steps=20,
        batch_size=16,
        learning_rate=3e-3,
        warmup_steps=2,
        log_every=2,
        checkpoint_every=5,
        progress=False,
        tensorboard=False,
        monitor_every=0,
    )
    return TrainConfig(**{**base, **kw})


def test_max_minutes_stops_the_run_saves_the_model_and_lowers_the_lr(tmp_path):
    def slow(items):
        time.sleep(0.05)
        return collate_vectors(items)

    torch.manual_seed(0)
    result = Trainer(config(tmp_path, max_steps=100000, max_minutes=1.0 / 60, warmup_steps=0, log_every=1)).fit(
        build_vector_model({"dim": 16}), toy_data(), slow
    )
    assert 3 <= result.step < 100, result.step  # about 1 s of 0.05 s steps, far from max_steps
    assert result.checkpoint == tmp_path / "model.pt" and result.checkpoint.exists()
    records = read_metrics(tmp_path)
    assert records[-1]["lr"] < 0.5 * 3e-3  # the cosine followed the clock, not the 100000 steps
    saved = load_checkpoint(step_checkpoints(tmp_path / "checkpoints")[0])["trainer"]
    assert saved["elapsed_s"] >= 1.0


def test_metrics_carry_time_rates_and_real_tokens_per_second(tmp_path):
    class Counting(Objective):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, encoder, batch):
            loss = (encoder(batch).pooled.mean() * self.w) ** 2
            return {"loss": loss, "real_tokens": torch.tensor(100.0)}

    base = build_vector_model({"dim": 16})
    model = SSLModel(base.encoder, {"count": Counting()})
    before = time.time()
    Trainer(config(tmp_path, max_steps=4, log_every=2)).fit(model, toy_data(), collate_vectors)
    records = read_metrics(tmp_path)
    for r in records:
        assert before <= r["time"] <= time.time()
        assert r["elapsed_s"] > 0 and r["steps_per_s"] > 0
        # 2 steps x 100 tokens per record window: tokens/s = 200 / window seconds = 100 x steps/s
        assert r["count/real_tokens_per_s"] == pytest.approx(100 * r["steps_per_s"], rel=1e-6)
        assert "count/real_tokens" not in r


def test_resume_leaves_no_duplicate_steps_in_metrics(tmp_path):
    torch.manual_seed(0)
    Trainer(config(tmp_path, max_steps=10)).fit(build_vector_model({"dim": 16}), toy_data(), collate_vectors)
    # pretend the run died after step 5: remove the later checkpoint, keep the log that reached step 10
    for path in step_checkpoints(tmp_path / "checkpoints"):
        if path.name != "step-00000005.pt":
            path.unlink()
    (tmp_path / "model.pt").unlink()
    Trainer(config(tmp_path, max_steps=10)).fit(build_vector_model({"dim": 16}), toy_data(), collate_vectors)
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps == [2, 4, 6, 8, 10], steps


def test_exception_in_a_step_saves_the_last_good_state_and_resume_continues_exactly(tmp_path):
    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("undecodable example")
        return collate_vectors(items)

    torch.manual_seed(0)
    model = build_vector_model({"dim": 16})
    with pytest.raises(RuntimeError, match="undecodable") as info:
        Trainer(config(tmp_path / "a", max_steps=12, checkpoint_every=100)).fit(model, toy_data(), flaky)
    saved = tmp_path / "a" / "checkpoints" / "step-00000007.pt"
    assert saved.exists() and str(saved) in "".join(getattr(info.value, "__notes__", []))
    state = load_checkpoint(saved)
    assert state["trainer"]["step"] == 7 and state["trainer"]["batch_in_epoch"] == 7
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    # resuming from the saved state gives the same weights as a run that never failed
    Trainer(config(tmp_path / "a", max_steps=12, checkpoint_every=100)).fit(
        build_vector_model({"dim": 16}), toy_data(), collate_vectors
    )
    torch.manual_seed(0)
    Trainer(config(tmp_path / "b", max_steps=12, checkpoint_every=100)).fit(
        build_vector_model({"dim": 16}), toy_data(), collate_vectors
    )
    a, b = (load_checkpoint(tmp_path / d / "model.pt")["model"] for d in "ab")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_non_finite_loss_keeps_finite_weights_on_disk(tmp_path):
    def poisoned(items):
        batch = collate_vectors(items)
        if poisoned.n == 6:
            batch["x"] = batch["x"] * float("nan")
        poisoned.n += 1
        return batch

    poisoned.n = 0
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match="loss is not finite at step 7"):
        Trainer(config(tmp_path, max_steps=12, checkpoint_every=100)).fit(
            build_vector_model({"dim": 16}), toy_data(), poisoned
        )
    state = load_checkpoint(tmp_path / "checkpoints" / "step-00000006.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_early_stopping_keeps_the_best_weights(tmp_path):
    torch.manual_seed(0)
    data = toy_data()
    val = toy_data(64, seed=1)
    cfg = config(
        tmp_path,
        max_steps=400,
        learning_rate=5e-2,
        eval_every=5,
        early_stopping_patience=2,
        warmup_steps=0,
        min_lr_ratio=1.0,
    )
    result = Trainer(cfg).fit(build_vector_model({"dim": 16}), data, collate_vectors, val_data=val)
    vals = [r["val/loss"] for r in result.history if "val/loss" in r]
    assert result.step < 400 and len(vals) >= 3
    best_step = load_checkpoint(tmp_path / "best.pt")["trainer"]["step"]
    assert best_step == 5 * (int(np.argmin(vals)) + 1)
    best = load_checkpoint(tmp_path / "best.pt")["model"]
    final = load_checkpoint(tmp_path / "model.pt")["model"]
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_lr_scales_give_a_prefix_its_own_learning_rate(tmp_path):
    model = build_vector_model({"dim": 16})
    model.lr_scales = {"encoder.": 0.1}
    opt = build_optimizer(model, config(tmp_path))
    lrs = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            lrs[names[id(p)]] = group["lr"]
    assert all(lr == pytest.approx(3e-4) for n, lr in lrs.items() if n.startswith("encoder."))
    assert all(lr == pytest.approx(3e-3) for n, lr in lrs.items() if not n.startswith("encoder."))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("log_every", 0, "train.log_every: expected >= 1, found 0"),
        ("checkpoint_every", 0, "train.checkpoint_every: expected >= 1, found 0"),
        ("learning_rate", 0, "train.learning_rate: expected > 0, found 0"),
        ("learning_rate", -1e-3, "train.learning_rate: expected > 0, found -0.001"),
        ("max_minutes", -5, "train.max_minutes: expected >= 0, found -5"),
        ("warmup_steps", -1, "train.warmup_steps: expected >= 0, found -1"),
        ("min_lr_ratio", 2, r"train.min_lr_ratio: expected a ratio in \[0, 1\], found 2"),
        ("betas", [0.9, 1.5], r"train.betas\[1\]: expected in \[0, 1\), found 1.5"),
        ("betas", [0.9], r"train.betas: expected two numbers in \[0, 1\)"),
        ("max_steps", "many", "train.max_steps: expected an integer, found 'many'"),
        ("keep_last", 0, "train.keep_last: expected >= 1, found 0"),
        ("early_stopping_patience", 3, "needs train.eval_every > 0"),
    ],
)
def test_numeric_config_keys_are_checked_at_load_time(key, value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, {key: value}, "train")
    with pytest.raises(ConfigError, match=message):  # built in Python: the same check
        TrainConfig(**{key: value})


def test_metrics_log_is_valid_jsonl_for_pandas(tmp_path):
    import pandas as pd

    Trainer(config(tmp_path, max_steps=6)).fit(build_vector_model({"dim": 16}), toy_data(), collate_vectors)
    frame = pd.read_json(tmp_path / "metrics.jsonl", lines=True)
    assert frame["step"].is_unique and list(frame["step"]) == [2, 4, 6]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 2


def test_on_step_end_sees_the_steps_the_time_budget_allows(tmp_path):
    seen = []

    class Watch(Objective):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, encoder, batch):
            return {"loss": (encoder(batch).pooled.mean() * self.w) ** 2}

        def on_step_end(self, encoder, step, max_steps):
            seen.append((step, max_steps))

    def slow(items):
        time.sleep(0.05)
        return collate_vectors(items)

    model = SSLModel(build_vector_model({"dim": 16}).encoder, {"watch": Watch()})
    Trainer(config(tmp_path, max_steps=100000, max_minutes=1.0 / 60)).fit(model, toy_data(), slow)
    last_step, expected = seen[-1]
    assert expected < 1000, seen[-3:]  # paced by the clock (about 20 steps a second), not 100000 steps
    assert abs(expected - last_step) <= max(3, 0.3 * last_step)
