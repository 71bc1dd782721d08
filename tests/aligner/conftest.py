"""Tiny image-caption sets generated on the fly (coloured shapes) and a tiny aligner config."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_modal.aligner.config import AlignerConfig

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40)}


def write_shapes(folder, n_images: int = 16, captions_per_image: int = 2, seed: int = 0):
    """Images of one coloured square on grey noise, captioned with their colour; returns the manifest path."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    names = list(COLOURS)
    for i in range(n_images):
        colour = names[i % len(names)]
        pixels = rng.integers(90, 160, size=(48, 48, 3)).astype(np.uint8)
        x, y = rng.integers(0, 20, size=2)
        pixels[y : y + 28, x : x + 28] = COLOURS[colour]
        name = f"img{i:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        for j in range(captions_per_image):
            rows.append({"image": name, "caption": f"a {colour} square" if j == 0 else f"the {colour} block"})
    manifest = folder / "captions.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def tiny_config(manifest, output_dir, **train) -> AlignerConfig:
    cfg = AlignerConfig()
    cfg.model.image = dataclasses.replace(cfg.model.image, image_size=32, patch_size=8, width=32, layers=1, heads=2)
    cfg.model.text = dataclasses.replace(cfg.model.text, width=32, layers=1, heads=2, vocab_size=60, max_length=16)
    cfg.model.embed_dim = 16
    cfg.data = dataclasses.replace(cfg.data, manifest=str(manifest), test_fraction=0.25)
    cfg.eval = dataclasses.replace(
        cfg.eval, batch_size=16, grid_captions=2, zero_shot_classes=list(COLOURS), zero_shot_templates=["a {} square"]
    )
    cfg.train = dataclasses.replace(
        cfg.train,
        output_dir=str(output_dir),
        max_steps=4,
        batch_size=8,
        log_every=1,
        checkpoint_every=2,
        monitor_every=2,
        warmup_steps=0,
        progress=False,
        **train,
    )
    return cfg


@pytest.fixture
def shapes(tmp_path):
    return write_shapes(tmp_path / "shapes")
