"""Training records of the latest run, and the PNG plots every recipe saves."""

import json

import numpy as np
import pytest

from ssl_modal.core.monitors import training_records
from ssl_modal.core.plots import plot_embedding_map, plot_training_curves


def write_metrics(folder, records):
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_training_records_keep_only_the_latest_run(tmp_path):
    write_metrics(
        tmp_path,
        [
            {"step": 10, "loss": 5.0},
            {"step": 20, "loss": 4.0},
            {"step": 20, "val/loss": 4.1},
            {"step": 10, "loss": 6.0},
            {"step": 20, "loss": 5.5},
            {"step": 30, "loss": 5.0},
        ],
    )
    assert [r["loss"] for r in training_records(tmp_path)] == [6.0, 5.5, 5.0]
    assert training_records(tmp_path / "absent") == []


def test_training_curves_png_and_empty_run_error(tmp_path):
    write_metrics(tmp_path, [{"step": s, "loss": 3.0 / s, "a/loss": 1.0 / s, "a/accuracy": s / 10} for s in (1, 2, 3)])
    png = plot_training_curves(
        tmp_path,
        tmp_path / "out" / "curve.png",
        "t",
        losses=[("a/loss", "a")],
        accuracies=[("a/accuracy", "acc"), ("missing/accuracy", "never drawn")],
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="metrics.jsonl holds no training records"):
        plot_training_curves(tmp_path, tmp_path / "x.png", "t")


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_embedding_map_png(tmp_path, method):
    features = np.random.default_rng(0).normal(size=(40, 8))
    png = plot_embedding_map(features, np.arange(40) % 3, tmp_path / f"{method}.png", "map", method=method)
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="expected 'tsne' or 'pca', found 'umap'"):
        plot_embedding_map(features, np.zeros(40), tmp_path / "x.png", "map", method="umap")
