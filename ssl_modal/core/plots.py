"""PNG plots every recipe saves: training curves from metrics.jsonl and 2-D maps of embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .monitors import training_records

LOSS_COLORS = ("tab:blue", "tab:cyan", "tab:brown", "tab:olive", "tab:pink", "tab:gray")
ACCURACY_COLORS = ("tab:orange", "tab:green", "tab:red", "tab:purple")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, png_path: str | Path, dpi: int = 120) -> Path:
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png_path, dpi=dpi)
    pyplot().close(fig)
    return png_path


def plot_training_curves(
    output_dir: str | Path,
    png_path: str | Path,
    title: str,
    *,
    losses: Sequence[tuple[str, str]] = (),
    accuracies: Sequence[tuple[str, str]] = (),
    loss_label: str = "loss",
) -> Path:
    """Total loss, the metrics `losses` ((key, label) pairs) on the left axis, `accuracies` on a right axis.

    A metric is drawn when every training record of the latest run has it.
    """
    records = training_records(output_dir)
    if not records:
        raise ValueError(f"{Path(output_dir) / 'metrics.jsonl'} holds no training records")
    plt = pyplot()
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    lines = ax.plot(steps, [r["loss"] for r in records], color="black", label="total loss")
    drawn = [(key, label) for key, label in losses if all(key in r for r in records)]
    for (key, label), color in zip(drawn, LOSS_COLORS, strict=False):
        lines += ax.plot(steps, [r[key] for r in records], color=color, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(loss_label)
    ax.grid(alpha=0.3)
    present = [(key, label) for key, label in accuracies if all(key in r for r in records)]
    if present:
        right = ax.twinx()
        for (key, label), color in zip(present, ACCURACY_COLORS, strict=False):
            lines += right.plot(steps, [r[key] for r in records], color=color, linestyle="--", label=label)
        right.set_ylabel("accuracy")
        right.set_ylim(0, 1)
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title(title)
    return save_figure(fig, png_path)


def plot_embedding_map(
    features: np.ndarray,
    labels,
    png_path: str | Path,
    title: str,
    *,
    legend_title: str = "",
    method: str = "tsne",
    seed: int = 0,
) -> Path:
    """2-D t-SNE (or PCA) of `features`, one colour per label value (legend up to 20 values)."""
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    if method == "tsne" and len(features) > 3:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    elif method in ("tsne", "pca"):
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(features)
    else:
        raise ValueError(f"embedding map method: expected 'tsne' or 'pca', found '{method}'")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    values = sorted(set(labels.tolist()), key=str)
    cmap = plt.get_cmap("tab20" if len(values) > 10 else "tab10")
    for i, value in enumerate(values):
        sel = labels == value
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap(i % cmap.N), label=str(value))
    if len(values) <= 20:
        ax.legend(markerscale=2, fontsize=7, title=legend_title or None, loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, png_path)
