"""Train a tiny aligner on deterministic in-memory pairs (no augmentation, no dropout); used under torchrun.

python -m tests.aligner.train_tiny OUT_DIR STEPS BATCH_SIZE
"""

import dataclasses
import sys

import torch

from ssl_modal.aligner.model import build_aligner_model
from ssl_modal.aligner.recipe import model_config
from ssl_modal.core.trainer import Trainer

from .conftest import COLOURS, tiny_config


def pairs(n: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    names = list(COLOURS)
    return [
        {
            "pixel_values": torch.randn(3, 32, 32, generator=g) + i % 4,
            "caption": f"a {names[i % 4]} square",
            "group": i // 2,
        }
        for i in range(n)
    ]


def main(out_dir: str, steps: int, batch_size: int) -> None:
    cfg = tiny_config("unused.csv", out_dir, seed=0)
    cfg.model.text = dataclasses.replace(cfg.model.text, dropout=0.0)
    cfg.train = dataclasses.replace(cfg.train, max_steps=steps, batch_size=batch_size, checkpoint_every=steps)
    data = pairs()
    torch.manual_seed(0)
    model = build_aligner_model(model_config(cfg, [d["caption"] for d in data]))
    Trainer(cfg.train).fit(model, data, model.collate)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
