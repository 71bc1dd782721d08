"""Subprocess entry for resume/signal/DDP tests: trains the vectors model on fixed synthetic data.

usage: python -m tests.core.train_toy OUTPUT_DIR MAX_STEPS BATCH_SIZE [delay_s] [objective] [dropout]
"""

import sys
import time

import numpy as np
import torch

from ssl_modal import TrainConfig, Trainer
from ssl_modal.vectors import build_vector_model, collate_vectors


def toy_data(n: int = 512, dim: int = 16, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    return list((z @ rng.normal(size=(4, dim))).astype(np.float32))


def main() -> None:
    out, max_steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    objective = sys.argv[5] if len(sys.argv) > 5 else "masked"
    dropout = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1

    def collate(items):
        time.sleep(delay)  # slows the run so a test can interrupt it mid-way
        return collate_vectors(items)

    torch.manual_seed(0)
    model = build_vector_model({"dim": 16, "dropout": dropout, "objectives": {objective: 1.0}})
    config = TrainConfig(
        output_dir=out,
        max_steps=max_steps,
        batch_size=batch,
        learning_rate=3e-3,
        warmup_steps=5,
        log_every=1,
        checkpoint_every=10,
        keep_last=3,
        progress=False,
        tensorboard=False,
        monitor_every=0,
    )
    result = Trainer(config).fit(model, toy_data(), collate)
    print(f"done step={result.step} interrupted={result.interrupted}", flush=True)


if __name__ == "__main__":
    main()
