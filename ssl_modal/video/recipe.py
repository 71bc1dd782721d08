"""Recipe support for `domain: video`: colorization (+ frame-order) pretraining, then DAVIS mask propagation
(J&F) against baselines; held-out frame-order accuracy when that objective is on.

Used by `recipes/video_tracking.py`, `recipes/video_frame_order.py` and `ssl-modal train|eval <recipe>.yaml`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from ssl_modal.core.export import export, load_model
from ssl_modal.core.trainer import Trainer, TrainResult
from ssl_modal.video.config import PropagationConfig, VideoConfig
from ssl_modal.video.data import ClipDataset, ClipWindows, WalkClips, fit_centres, load_images, load_videos
from ssl_modal.video.davis import list_sequences, load_sequence, sequence_scores
from ssl_modal.video.model import build_video_model
from ssl_modal.video.propagate import (
    copy_first_frame,
    encoder_features,
    extract,
    lab_pooled_features,
    mix_colour,
    propagate,
)
from ssl_modal.video.report import TrackingTable, save_overlay

Config = VideoConfig
log = logging.getLogger("ssl_modal")


def model_config(cfg: VideoConfig, centres: list | None) -> dict:
    """The plain dict the checkpoint stores (fitted colour centres included)."""
    color = dataclasses.asdict(cfg.colorization)
    color["centres"] = centres
    return {
        "encoder": dataclasses.asdict(cfg.encoder),
        "colorization": color,
        "frame_order": dataclasses.asdict(cfg.frame_order),
        "walk": dataclasses.asdict(cfg.walk),
    }


def training_data(cfg: VideoConfig, patterns: list[str] | None = None):
    """(report of decoded videos, dataset) for the train (or given) videos: random-walk clips (+ still images)
    when walk.weight > 0, else colorization (+ frame-order) clips."""
    report = load_videos(patterns or cfg.data.train_videos, cfg.data.size, cfg.data.on_error)
    if cfg.walk.weight:
        if cfg.colorization.weight or cfg.frame_order.weight:
            raise ValueError(
                "walk.weight > 0 trains on random-walk clips: set colorization.weight and "
                "frame_order.weight to 0 (one clip sampler per run)"
            )
        images = load_images(cfg.data.train_images, cfg.data.size) if cfg.data.train_images else []
        return report, WalkClips(report.videos, images, cfg.walk)
    if cfg.data.train_images:
        raise ValueError("data.train_images is used by the random walk only; set walk.weight > 0 or drop it")
    order = cfg.frame_order if cfg.frame_order.weight else None
    return report, ClipDataset(report.videos, cfg.colorization, order)


def train(cfg: VideoConfig) -> TrainResult:
    """Fit the colour centres on training frames, then pretrain; the final model is `<output_dir>/model.pt`.
    With data.folds this trains on `data.train_videos` as given: `protocol.run_folds` trains one model per fold."""
    report, data = training_data(cfg)
    centres = fit_centres(report.videos, cfg.colorization) if cfg.colorization.weight else None
    torch.manual_seed(cfg.train.seed)
    model = build_video_model(model_config(cfg, centres))
    log.info(
        "video model %s: %s parameters, %d training clips from %s",
        model.spec.kind,
        f"{sum(p.numel() for p in model.parameters()):,}",
        len(data),
        report,
    )
    return Trainer(cfg.train).fit(model, data, model.collate)


def random_init_like(model, seed: int):
    torch.manual_seed(seed)
    return build_video_model(model.spec.config).eval()


ENCODER_ROWS = ("random-init", "SSL")  # the rows whose features `propagation.lab_weight` mixes with pooled Lab


def tracking_methods(model, p: PropagationConfig, seed: int, baselines: bool = True) -> dict:
    """Feature functions at stride `p.stride` (None = copy-first): baselines first, the pretrained encoder last."""
    methods = {}
    if baselines:
        methods["copy-first"] = None
        methods["raw-Lab"] = lab_pooled_features(p.stride)
        methods["random-init"] = encoder_features(random_init_like(model, seed).encoder, p.stride)
    methods["SSL"] = encoder_features(model.encoder, p.stride)
    return methods


def evaluate_settings(
    cfg: VideoConfig,
    model,
    names: list[str],
    settings: list[PropagationConfig],
    methods_for=None,
    overlay_dir: Path | None = None,
) -> list[TrackingTable]:
    """One J&F table per propagation setting on sequences `names`; each method's features are extracted once
    per sequence and stride and shared by the settings. `methods_for(p)` -> {method: feature fn or None}."""
    from tqdm.auto import tqdm

    methods_for = methods_for or (lambda p: tracking_methods(model, p, cfg.train.seed + 1, cfg.eval.baselines))
    by_stride = {p.stride: methods_for(p) for p in settings}
    tables = [TrackingTable(list(by_stride[p.stride]), model.spec.kind) for p in settings]
    for name in tqdm(names, desc="propagate", unit="seq", disable=not cfg.train.progress):
        seq = load_sequence(cfg.data.davis_root, name, cfg.data.max_frames)
        cache: dict[tuple[str, int], tuple] = {}
        for p, table in zip(settings, tables, strict=True):
            for method, fn in by_stride[p.stride].items():
                if fn is None:
                    preds, fps = copy_first_frame(seq.frames, seq.masks[0]), float("nan")
                else:
                    if (method, p.stride) not in cache:
                        cache[(method, p.stride)] = extract(fn, seq.frames)
                    feats, seconds = cache[(method, p.stride)]
                    if method in ENCODER_ROWS and p.lab_weight > 0:
                        if ("raw-Lab", p.stride) not in cache:
                            cache[("raw-Lab", p.stride)] = extract(lab_pooled_features(p.stride), seq.frames)
                        lab, lab_seconds = cache[("raw-Lab", p.stride)]
                        feats, seconds = mix_colour(feats, lab, p.lab_weight), seconds + lab_seconds
                    preds, fps = propagate(
                        None,
                        seq.frames,
                        seq.masks[0],
                        p.context,
                        p.topk,
                        p.radius,
                        p.temperature,
                        features=(feats, seconds),
                        dtype=getattr(torch, p.precision),
                    )
                table.add(name, method, sequence_scores(preds, seq.masks, cfg.eval.bound_th), fps, len(seq.frames))
                if overlay_dir is not None and cfg.eval.overlays and method == table.methods[-1]:
                    table.overlays.append(save_overlay(seq, preds, overlay_dir / f"{name}.png", cfg.eval.overlays))
    return tables


def evaluate_tracking(
    cfg: VideoConfig,
    model,
    overlay_dir: Path | None = None,
    names: list[str] | None = None,
    p: PropagationConfig | None = None,
) -> TrackingTable:
    """Propagate each sequence's first mask with every method; J and F per sequence (and per frame)."""
    names = names or cfg.data.sequences or list_sequences(cfg.data.davis_root)
    return evaluate_settings(cfg, model, names, [p or cfg.propagation], overlay_dir=overlay_dir)[0]


@torch.no_grad()
def frame_order_accuracy(model, data, batch_size: int, batches: int, seed: int = 0) -> float:
    """Accuracy of the frame-order head on `data` (fixed permutation draws), in eval mode."""
    model.eval()
    objective = model.objectives["order"]
    objective.generator = torch.Generator().manual_seed(seed)
    step = max(1, len(data) // (batch_size * batches))
    picks = list(range(0, len(data), step))[: batch_size * batches]
    correct = 0.0
    for i in range(0, len(picks), batch_size):
        batch = model.collate([data[j] for j in picks[i : i + batch_size]])
        correct += float(objective(model.encoder, batch)["accuracy"]) * len(batch["frames"])
    return correct / len(picks)


def evaluate(cfg: VideoConfig, model=None, overlay_dir: Path | None = None) -> TrackingTable:
    """J&F table on the DAVIS sequences (overlay PNGs to `overlay_dir`, default `<output_dir>/overlays`); with the
    frame-order objective, also its held-out accuracy. With data.folds: each fold's model on its unseen sequences
    (with the propagation chosen for it), pooled."""
    if cfg.data.folds and model is None:
        from ssl_modal.video.protocol import evaluate_folds

        return evaluate_folds(cfg)
    model = model if model is not None else load_model(cfg.train.output_dir)
    table = evaluate_tracking(cfg, model, overlay_dir or Path(cfg.train.output_dir) / "overlays")
    if "order" in model.objectives:
        check_heldout(cfg)
        _, held = training_data(cfg, cfg.data.heldout_videos)
        n, b = cfg.eval.frame_order_batches, cfg.train.batch_size
        table.frame_order = {
            "chance (1/n!)": 1.0 / len(model.objectives["order"].orders),
            "random-init encoder + head": frame_order_accuracy(random_init_like(model, cfg.train.seed + 1), held, b, n),
            "SSL encoder + head": frame_order_accuracy(model, held, b, n),
            "held-out clips": min(len(held), b * n),
        }
    return table


def check_heldout(cfg: VideoConfig) -> None:
    if cfg.frame_order.weight and not cfg.data.heldout_videos:
        raise ValueError("frame-order evaluation needs data.heldout_videos (videos not used for training)")


def export_clip_embeddings(cfg: VideoConfig, model, path: Path) -> Path:
    """One embedding per window of `eval.window` frames (every `eval.window_stride`) of each training video,
    with video name and start/end time: Parquet via the shared `export`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    report = load_videos(cfg.data.train_videos, cfg.data.size, cfg.data.on_error)
    windows = ClipWindows(report.videos, report.fps, cfg.eval.window, cfg.eval.window_stride)
    ids = [f"{m['video']}@{m['start_s']:.3f}s" for m in windows.meta]
    export(model, windows, path, ids=ids, batch_size=16, progress=False)
    table = pq.read_table(path)
    for key in ("video", "start_frame", "start_s", "end_s"):
        table = table.append_column(key, pa.array([m[key] for m in windows.meta]))
    pq.write_table(table, path)
    return path


def run(cfg: VideoConfig, title: str) -> TrackingTable:
    """Train, evaluate J&F (+ frame order), export clip embeddings, plot; print the table and every output path."""
    import time

    from ssl_modal.core.monitors import training_records
    from ssl_modal.core.plots import plot_training_curves

    if cfg.data.folds:
        from ssl_modal.video.protocol import run_folds

        return run_folds(cfg, title)
    check_heldout(cfg)  # before training, not after it
    out = Path(cfg.train.output_dir)
    start = time.perf_counter()
    result = train(cfg)
    trained = time.perf_counter()
    model = load_model(result.checkpoint)
    table = evaluate(cfg, model, overlay_dir=out / "overlays")
    evaluated = time.perf_counter()
    embeddings = export_clip_embeddings(cfg, model, out / "clip_embeddings.parquet")
    records = training_records(out)
    curve = plot_training_curves(
        out,
        out / "loss_curve.png",
        f"{title} ({out.name})",
        accuracies=[("color/color_accuracy", "colour accuracy"), ("order/accuracy", "frame-order accuracy")],
    )
    scores = table.to_json(out / "tracking.json")
    last = records[-1] if records else {}
    print(
        f"\nmask propagation on {cfg.data.davis_root} (first-frame mask given; SEEN: pretraining used these "
        "sequences' frames unless data.train_videos excludes them; data.folds gives the unseen protocol):"
    )
    print(table)
    parts = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.endswith(("/loss", "accuracy")))
    print(f"\nfinal training metrics at step {result.step}: {parts}")
    print(
        f"time: pretraining {trained - start:.0f} s, evaluation {evaluated - trained:.0f} s, "
        f"total {time.perf_counter() - start:.0f} s"
    )
    print("written:")
    for name, path in [
        ("model", result.checkpoint),
        ("metrics", out / "metrics.jsonl"),
        ("loss curve", curve),
        ("J&F table", scores),
        ("clip embeddings", embeddings),
    ] + [(f"overlay {p.stem}", p) for p in table.overlays]:
        print(f"  {name:<22} {path}")
    return table
