"""The audio recipe's headline protocol: nothing it reports was seen by pretraining or by the probe.

For each held-out group g of `eval.rotate_column` (FSDD: each speaker in turn) and each seed of
`eval.seeds`: pretrain on the clips of every other group (labels unused), train the probes (or fine-tune)
on those same groups' labels, test on g. Rows, each reported as mean and range over groups x seeds:

- MFCC mean+std + the linear probe, pooled over the whole clip and over `eval.mfcc_segments` time parts;
- the random-init encoder of the same architecture (its own seeds) and the SSL encoder, frozen
  (linear probe and kNN) and fine-tuned (`ssl_modal.core.finetune.finetune`: encoder + linear head,
  early stopping on a validation split of the training groups);
- the label-efficiency curve: the same rows with `eval.label_counts` labelled clips per class
  (0 = all), drawn from the training groups with the run's seed; saved as a PNG.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ssl_modal.audio.frontend import mfcc_mean_std
from ssl_modal.core.evaluate import ProbeResult, probe

log = logging.getLogger("ssl_modal")


def labelled_subset(labels: np.ndarray, candidates: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` indices of each class among `candidates` (all when 0 or when a class has fewer), sorted."""
    if per_class <= 0:
        return np.sort(candidates)
    rng = np.random.default_rng(seed)
    picked = []
    for cls in np.unique(labels[candidates]):
        pool = candidates[labels[candidates] == cls]
        picked.append(rng.choice(pool, size=min(per_class, len(pool)), replace=False))
    return np.sort(np.concatenate(picked))


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (row name, label count): mean, min, max and count of each score over the runs."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["row"], r["per_class"]), []).append(r)
    out = []
    for (row, per_class), items in groups.items():
        entry = {"row": row, "per_class": per_class, "runs": len(items)}
        for key in ("linear_acc", "knn_acc"):
            values = [i[key] for i in items if i.get(key) is not None]
            if values:
                entry[key] = float(np.mean(values))
                entry[f"{key}_min"], entry[f"{key}_max"] = float(np.min(values)), float(np.max(values))
        out.append(entry)
    return out


def format_summary(summary: list[dict]) -> str:
    """A Markdown table: row, labelled clips per class, linear acc mean [min, max], kNN acc, runs."""
    lines = ["| row | labels per class | linear acc (mean [min, max]) | kNN acc | runs |", "|---|---:|---|---|---:|"]
    for e in summary:

        def cell(key, e=e):
            return f"{e[key]:.3f} [{e[key + '_min']:.3f}, {e[key + '_max']:.3f}]" if key in e else "-"

        lines.append(
            f"| {e['row']} | {e['per_class'] or 'all'} | {cell('linear_acc')} | {cell('knn_acc')} | {e['runs']} |"
        )
    return "\n".join(lines)


def plot_label_efficiency(summary: list[dict], png_path: str | Path, title: str) -> Path:
    """Accuracy on the held-out group vs labelled clips per class, one line per row (range as a band)."""
    from ssl_modal.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    counts = sorted({e["per_class"] for e in summary}, key=lambda c: (c == 0, c))
    xs = {c: i for i, c in enumerate(counts)}
    for row in dict.fromkeys(e["row"] for e in summary):
        pts = sorted((xs[e["per_class"]], e) for e in summary if e["row"] == row and "linear_acc" in e)
        if len(pts) < 2:
            continue
        x = [p[0] for p in pts]
        ax.plot(x, [p[1]["linear_acc"] for p in pts], marker="o", label=row)
        ax.fill_between(x, [p[1]["linear_acc_min"] for p in pts], [p[1]["linear_acc_max"] for p in pts], alpha=0.15)
    ax.set_xticks(range(len(counts)), [str(c) if c else "all" for c in counts])
    ax.set_xlabel("labelled clips per class (training speakers)")
    ax.set_ylabel("accuracy on the held-out speaker")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, png_path)


def _row(result: ProbeResult, row: str, group, seed, per_class, knn: bool = True) -> dict:
    return {
        "row": row,
        "group": str(group),
        "seed": seed,
        "per_class": per_class,
        "linear_acc": float(result.linear_acc),
        "knn_acc": float(result.knn_acc) if knn else None,
    }


def folds(cfg) -> list[dict]:
    """The protocol's folds: {"name", "windows" (pretraining), "train" and "test" (labelled whole clips)}.
    With `eval.test` (the core eval-data scheme): one fold, pretraining on `data`, the probe trained on
    `eval.train` (default: `data`) and tested on `eval.test`. Otherwise each group of `eval.rotate_column`
    is held out in turn (those named in `eval.held_out`, default all)."""
    from dataclasses import replace

    from ssl_modal.audio.recipe import read_segments
    from ssl_modal.core.eval_data import EvalData

    e = cfg.eval
    mined = cfg.mining_columns()
    if e.test is not None:
        train_data, test_data = EvalData(train=e.train, test=e.test).resolve(cfg.data)
        read = lambda data, labels, window: read_segments(replace(cfg, data=data), labels, window)  # noqa: E731
        return [
            {
                "name": test_data.manifest,
                "windows": read_segments(cfg, mined),  # with neighbour mining's group column
                "train": read(train_data, [e.digit_column], None),
                "test": read(test_data, [e.digit_column], None),
            }
        ]
    column = e.rotate_column
    clips = read_segments(cfg, [e.digit_column, column], window_seconds=None)
    windows = read_segments(cfg, list(dict.fromkeys([column, *mined])))
    groups = sorted({str(c[column]) for c in clips})
    if len(groups) < 2:
        raise ValueError(
            f"eval.rotate_column '{column}': needs at least 2 groups in {cfg.data.manifest}, found {groups}"
        )
    unknown = sorted(set(map(str, e.held_out or [])) - set(groups))
    if unknown:
        raise ValueError(
            f"eval.held_out: {unknown} not found in column '{column}' of {cfg.data.manifest}; its groups are {groups}"
        )
    chosen = [g for g in groups if e.held_out is None or g in set(map(str, e.held_out))]
    return [
        {
            "name": g,
            "windows": [w for w in windows if str(w[column]) != g],
            "train": [c for c in clips if str(c[column]) != g],
            "test": [c for c in clips if str(c[column]) == g],
        }
        for g in chosen
    ]


def rotate(cfg, pretrain, encode_clips, finetune_fn=None) -> dict:
    """Run the protocol over `folds(cfg)`. `pretrain(cfg, windows, output_dir, seed) -> model`,
    `encode_clips(model, clips) -> (N, D)`, `finetune_fn(model, train_clips, train_labels, test_clips,
    test_labels, seed, name) -> ProbeResult` (None: no fine-tuned rows). Returns {"runs", "summary", ...}."""
    import torch

    from ssl_modal.audio.model import build_audio_model

    e, f = cfg.eval, cfg.frontend
    runs: list[dict] = []
    fold_list = folds(cfg)
    for fold in fold_list:
        g, clips = fold["name"], fold["train"] + fold["test"]
        labels = np.asarray([str(c[e.digit_column]) for c in clips])
        train_idx, test_idx = np.arange(len(fold["train"])), np.arange(len(fold["train"]), len(clips))
        waves = [c["wave"] for c in clips]
        for n in dict.fromkeys((1, e.mfcc_segments)):
            x = mfcc_mean_std(waves, f.sample_rate, e.n_mfcc, f.n_fft, f.hop_length, f.n_mels, segments=n)
            name = "MFCC mean+std" + ("" if n == 1 else f", {n} time segments")
            for per_class in e.label_counts:
                sub = labelled_subset(labels, train_idx, per_class, 0)
                runs.append(
                    _row(
                        probe(x, labels, train_idx=sub, test_idx=test_idx, k=min(e.knn_k, len(sub))),
                        name,
                        g,
                        None,
                        per_class,
                    )
                )
        for seed in e.seeds:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(str(g)).stem)
            model = pretrain(cfg, fold["windows"], Path(cfg.train.output_dir) / f"heldout_{safe}" / f"seed{seed}", seed)
            torch.manual_seed(10_000 + seed)
            random_model = build_audio_model(model.spec.config)
            for name, m in (("random-init encoder", random_model), ("SSL encoder", model)):
                x = encode_clips(m, clips)
                for per_class in e.label_counts:
                    sub = labelled_subset(labels, train_idx, per_class, seed)
                    runs.append(
                        _row(
                            probe(x, labels, train_idx=sub, test_idx=test_idx, k=min(e.knn_k, len(sub))),
                            f"{name}, frozen",
                            g,
                            seed,
                            per_class,
                        )
                    )
                    if finetune_fn is not None and per_class in e.finetune_counts:
                        result = finetune_fn(
                            m,
                            [clips[i] for i in sub],
                            labels[sub],
                            [clips[i] for i in test_idx],
                            labels[test_idx],
                            seed,
                            f"{name}, fine-tuned",
                        )
                        runs.append(_row(result, f"{name}, fine-tuned", g, seed, per_class))
            log.info(
                "held out %s, seed %s: %s",
                g,
                seed,
                [
                    (r["row"], r["per_class"], round(r["linear_acc"], 3))
                    for r in runs
                    if r["group"] == str(g) and r["seed"] == seed
                ],
            )
    return {
        "held_out": [str(fold["name"]) for fold in fold_list],
        "seeds": list(e.seeds),
        "runs": runs,
        "summary": summarise(runs),
    }


def write_protocol(result: dict, out_dir: str | Path, title: str) -> dict[str, Path]:
    """protocol.json (every run and the summary), protocol.md (the table) and label_efficiency.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"protocol": out_dir / "protocol.json", "table": out_dir / "protocol.md"}
    paths["protocol"].write_text(json.dumps(result, indent=1))
    paths["table"].write_text(format_summary(result["summary"]) + "\n")
    if len({e["per_class"] for e in result["summary"]}) > 1:
        paths["label efficiency"] = plot_label_efficiency(result["summary"], out_dir / "label_efficiency.png", title)
    return paths


def merge_protocols(paths: list[str | Path]) -> dict:
    """One protocol result from several runs' protocol.json (e.g. one held-out speaker per invocation)."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    runs = [r for res in results for r in res["runs"]]
    seen, unique = set(), []
    for r in runs:  # the MFCC rows do not depend on the seed: keep one per (row, group, labels)
        key = (r["row"], r["group"], r["seed"], r["per_class"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return {
        "held_out": sorted({g for res in results for g in res["held_out"]}),
        "seeds": sorted({s for res in results for s in res["seeds"]}),
        "runs": unique,
        "summary": summarise(unique),
        "merged_from": [str(p) for p in paths],
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m ssl_modal.audio.protocol OUT_DIR RUN/protocol.json ...`: merge runs into OUT_DIR."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m ssl_modal.audio.protocol OUT_DIR RUN/protocol.json [RUN/protocol.json ...]")
        return 2
    merged = merge_protocols(args[1:])
    for name, path in write_protocol(merged, args[0], "digit on a held-out speaker").items():
        print(f"{name:<16} {path}")
    print(format_summary(merged["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "merge_protocols",
    "folds",
    "format_summary",
    "labelled_subset",
    "plot_label_efficiency",
    "rotate",
    "summarise",
    "write_protocol",
]
