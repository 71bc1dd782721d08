"""PNG plots of the audio recipe: training curves and a t-SNE of embeddings coloured by a label."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_modal.core.monitors import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_records(run_dir: str | Path) -> list[dict]:
    """Training records (with "loss") of the latest run in `run_dir` (a restart from step 0 starts over)."""
    records: list[dict] = []
    for record in read_metrics(Path(run_dir)):
        if "loss" not in record:
            continue
        if records and record["step"] <= records[-1]["step"]:
            records = [r for r in records if r["step"] < record["step"]]
        records.append(record)
    return records


def plot_loss_curve(run_dir: str | Path, png_path: str | Path) -> Path:
    """Total loss, each objective's loss, and time-shift accuracy against step."""
    records = training_records(run_dir)
    if not records:
        raise ValueError(f"{run_dir}/metrics.jsonl holds no training records")
    plt = _pyplot()
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    lines = ax.plot(steps, [r["loss"] for r in records], color="black", label="total (weighted)")
    for key, color in (("masked_frames/loss", "tab:blue"), ("time_shift/loss", "tab:green")):
        if all(key in r for r in records):
            lines += ax.plot(steps, [r[key] for r in records], color=color, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (L1 per masked frame+bin / cross-entropy)")
    ax.grid(alpha=0.3)
    if all("time_shift/accuracy" in r for r in records):
        acc = ax.twinx()
        lines += acc.plot(steps, [r["time_shift/accuracy"] for r in records], color="tab:orange", alpha=0.7,
                          label="time-shift accuracy")
        acc.set_ylabel("time-shift accuracy")
        acc.set_ylim(0, 1)
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    ax.set_title(f"audio pretraining ({Path(run_dir).name})")
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path


def plot_tsne(features: np.ndarray, labels, png_path: str | Path, title: str, seed: int = 0) -> Path:
    """2-D t-SNE of `features`, one colour per label value."""
    from sklearn.manifold import TSNE

    labels = np.asarray(labels)
    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    cmap = plt.get_cmap("tab10")
    for i, value in enumerate(sorted(set(labels.tolist()), key=str)):
        sel = labels == value
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(i % 10), label=str(value))
    ax.legend(markerscale=2, fontsize=8, title="digit", loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path
