"""Recipe support for `domain: audio`: pretrain (masked frames + time shift), then frozen-encoder probes.

Used by `recipes/audio_fsdd.py` and by `ssl-modal train|eval recipes/audio_fsdd.yaml`.
Probes: digit on speakers the probe's training split never saw (leave-one-speaker-out, mean ± std over
speakers) and speaker identity (stratified k-fold CV), each for MFCC mean+std features, a random-init
encoder of the same architecture, and the pretrained encoder.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import cast

import numpy as np
import torch

from ssl_modal.audio.config import AudioConfig
from ssl_modal.audio.frontend import LogMel, mfcc_mean_std, streaming_stats
from ssl_modal.audio.io import AudioReader, load_segments, read_manifest
from ssl_modal.audio.model import audio_collate, audio_model_config, build_audio_model
from ssl_modal.audio.remine import PartnerData, RemineEmbedding
from ssl_modal.core.evaluate import ProbeResult, ProbeTable, probe, probe_split
from ssl_modal.core.export import encode, load_model
from ssl_modal.core.trainer import Trainer, TrainResult

Config = AudioConfig
log = logging.getLogger("ssl_modal")


def read_segments(cfg: AudioConfig, label_columns=(), window_seconds: float | None = -1.0) -> list[dict]:
    """The recipe's manifest read into windows (`window_seconds=-1`: data.window_seconds; None: whole files)."""
    frame = read_manifest(cfg.data.manifest, cfg.data.path_column, cfg.data.on_error)
    if cfg.data.max_files is not None:
        frame = frame.iloc[: cfg.data.max_files]
    reader = AudioReader(cfg.frontend.sample_rate)
    window = cfg.data.window_seconds if window_seconds == -1.0 else window_seconds
    segments = load_segments(
        frame,
        reader,
        window,
        cfg.data.window_hop_seconds,
        list(label_columns),
        cfg.data.manifest,
        cfg.train.progress,
        cfg.data.on_error,
    )
    log.info("%s: %s; %d segments", cfg.data.manifest, reader.summary(), len(segments))
    return segments


def count_short(segments: list[dict], cfg: AudioConfig) -> int:
    """Segments with fewer frames than the time-shift objective needs (crop + max|shift|); logged."""
    needed = cfg.time_shift.crop_frames + max(abs(s) for s in cfg.time_shift.shifts)
    hop = cfg.frontend.hop_length
    short = sum(len(s["wave"]) // hop + 1 < needed for s in segments)
    if short and cfg.weights.get("time_shift", 0.0):
        action = (
            "padded (the crop runs into masked padding)"
            if cfg.time_shift.short_clips == "pad"
            else "left out of the time-shift loss (still used by masked frames)"
        )
        log.info(
            "%d of %d segments are shorter than the %d frames (%.3f s) the time-shift objective needs: %s",
            short,
            len(segments),
            needed,
            (needed - 1) * hop / cfg.frontend.sample_rate,
            action,
        )
    return short


def frontend_stats(cfg: AudioConfig, segments: list[dict], batch_size: int = 256) -> dict:
    """Per-mel-bin mean/std of the training data in one streaming pass (on the training device)."""
    device = cfg.train.device if cfg.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    batches = (audio_collate(segments[i : i + batch_size]) for i in range(0, len(segments), batch_size))
    return streaming_stats(
        LogMel(**asdict(cfg.frontend)),
        batches,
        device,
        cfg.train.progress,
        total=(len(segments) + batch_size - 1) // batch_size,
    )


def train(cfg: AudioConfig, segments: list[dict] | None = None) -> TrainResult:
    """Pretrain on `segments` (default: `data.manifest`); the final model is `<train.output_dir>/model.pt`."""
    segments = read_segments(cfg, cfg.mining_columns()) if segments is None else segments
    count_short(segments, cfg)
    data: list[dict] | PartnerData = segments
    if cfg.weights.get("neighbour"):  # label-free partners for the neighbour objective (ssl_modal/audio/neighbours.py)
        from ssl_modal.audio.neighbours import attach_neighbours, mine_with_distances

        found, distances, groups = mine_with_distances(segments, cfg)
        if cfg.neighbour.clusters:  # label-free cluster ids for the supervised-contrastive loss
            from ssl_modal.audio.clusters import attach_clusters, mine_clusters

            segments = attach_clusters(segments, mine_clusters(distances, groups, cfg.neighbour, cfg.train.seed))
            if cfg.neighbour.cluster_positives == "cross_group":  # positives only from other speakers
                from ssl_modal.audio.clusters import attach_groups

                segments = attach_groups(segments, groups)
        if cfg.neighbour.remine_at:  # partners replaced mid-run (ssl_modal/audio/remine.py)
            if cfg.train.num_workers:
                raise ValueError("neighbour.remine_at needs train.num_workers: 0 (workers keep a copy of the pairs)")
            data = PartnerData(segments, found, distances, groups, seed=cfg.train.seed)
        else:
            data = attach_neighbours(segments, found)
    stats = frontend_stats(cfg, segments)
    log.info("log-mel statistics from %s frames", f"{stats['frames']:,}")
    torch.manual_seed(cfg.train.seed)
    model = build_audio_model(audio_model_config(cfg, stats))
    if isinstance(data, PartnerData):
        cast(RemineEmbedding, model.objectives["neighbour"]).attach(data)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("audio encoder: %s parameters, objectives %s", f"{n_params:,}", model.weights)
    return Trainer(cfg.train).fit(model, data, audio_collate)


def pretrain_on(cfg: AudioConfig, segments: list[dict], output_dir, seed: int):
    """`train` on `segments` into `output_dir` with `seed`; the trained model (for the protocol)."""
    run_cfg = replace(cfg, train=replace(cfg.train, output_dir=str(output_dir), seed=int(seed)))
    return load_model(train(run_cfg, segments).checkpoint)


def _combine(name: str, results: list[ProbeResult]) -> ProbeResult:
    """Mean ± std over the per-speaker folds of a leave-one-speaker-out probe."""
    keys = ("linear_acc", "linear_f1", "knn_acc", "knn_f1")
    mean = {k: float(np.mean([getattr(r, k) for r in results])) for k in keys}
    std = {f"{k}_std": float(np.std([getattr(r, k) for r in results])) for k in keys}
    return ProbeResult(
        name=name,
        **mean,
        **std,
        n_train=int(round(np.mean([r.n_train for r in results]))),
        n_test=int(round(np.mean([r.n_test for r in results]))),
        n_classes=results[0].n_classes,
        folds=len(results),
        k=results[0].k,
    )


def probe_unseen_groups(features, labels, groups, name: str, k: int, seed: int) -> ProbeResult:
    """Train the probe on all groups but one, test on the held-out group; every group once."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    results = [
        probe(
            features,
            labels,
            train_idx=np.flatnonzero(groups != g),
            test_idx=np.flatnonzero(groups == g),
            k=k,
            seed=seed,
            name=name,
        )
        for g in np.unique(groups)
    ]
    return _combine(name, results)


def probe_features(cfg: AudioConfig, model) -> dict:
    """Whole-file segments with labels and every feature set the table compares."""
    e = cfg.eval
    segments = read_segments(cfg, [e.digit_column, e.speaker_column], window_seconds=None)
    features = {}
    if e.baselines:
        f = cfg.frontend
        features["MFCC mean+std"] = mfcc_mean_std(
            (s["wave"] for s in segments), f.sample_rate, e.n_mfcc, f.n_fft, f.hop_length, f.n_mels
        )
        torch.manual_seed(cfg.train.seed + 1)
        random_model = build_audio_model(model.spec.config).to(next(model.parameters()).device)
        features["random-init encoder"] = encode(random_model, segments, e.batch_size)
    features["SSL encoder"] = encode(model, segments, e.batch_size)
    return {
        "segments": segments,
        "features": features,
        "digit": np.asarray([str(s[e.digit_column]) for s in segments]),
        "speaker": np.asarray([str(s[e.speaker_column]) for s in segments]),
    }


def probe_table(cfg: AudioConfig, collected: dict) -> ProbeTable:
    e, seed = cfg.eval, cfg.train.seed
    table = ProbeTable()
    for name, x in collected["features"].items():
        table.append(
            probe_unseen_groups(
                x, collected["digit"], collected["speaker"], f"digit (unseen speakers): {name}", e.knn_k, seed
            )
        )
    for name, x in collected["features"].items():
        table.append(
            probe(
                x,
                collected["speaker"],
                cv=e.speaker_folds,
                k=e.knn_k,
                seed=seed,
                name=f"speaker ({e.speaker_folds}-fold CV): {name}",
            )
        )
    return table


def separate_table(cfg: AudioConfig, model) -> ProbeTable:
    """Digit probes trained on `eval.train` (default `data`) and scored on `eval.test`: MFCC (whole clip and
    `eval.mfcc_segments` time parts), the random-init encoder and `model`, frozen."""
    from ssl_modal.audio.protocol import folds

    e, f = cfg.eval, cfg.frontend
    (fold,) = folds(cfg)
    train_y = [str(c[e.digit_column]) for c in fold["train"]]
    test_y = [str(c[e.digit_column]) for c in fold["test"]]
    torch.manual_seed(cfg.train.seed + 1)
    random_model = build_audio_model(model.spec.config)
    table = ProbeTable()
    for n in dict.fromkeys((1, e.mfcc_segments)):
        x = [
            mfcc_mean_std([c["wave"] for c in part], f.sample_rate, e.n_mfcc, f.n_fft, f.hop_length, f.n_mels, n)
            for part in (fold["train"], fold["test"])
        ]
        table.append(
            probe_split(
                x[0],
                train_y,
                x[1],
                test_y,
                k=e.knn_k,
                seed=cfg.train.seed,
                name="digit (eval.test): MFCC mean+std" + (f", {n} time segments" if n > 1 else ""),
            )
        )
    for name, m in (("random-init encoder", random_model), ("SSL encoder", model)):
        x = [encode(m, part, e.batch_size) for part in (fold["train"], fold["test"])]
        table.append(
            probe_split(x[0], train_y, x[1], test_y, k=e.knn_k, seed=cfg.train.seed, name=f"digit (eval.test): {name}")
        )
    return table


def evaluate(cfg: AudioConfig, model=None) -> ProbeTable:
    """Probe the frozen encoder of `train.output_dir` (or `model`) against the baselines; with `eval.test`,
    train the probes on `eval.train` (default: `data`) and score them on `eval.test`."""
    model = model if model is not None else load_model(cfg.train.output_dir)
    if cfg.eval.test is not None:
        return separate_table(cfg, model)
    return probe_table(cfg, probe_features(cfg, model))


def finetune_with(cfg: AudioConfig):
    """The protocol's fine-tuning step: `ssl_modal.core.finetune.finetune` with the recipe's eval settings."""
    from ssl_modal.core.finetune import finetune

    e = cfg.eval

    def run(model, train_clips, train_labels, test_clips, test_labels, seed, name):
        return finetune(
            model,
            train_clips,
            list(train_labels),
            audio_collate,
            test_examples=test_clips,
            test_labels=list(test_labels),
            max_steps=e.finetune_steps,
            batch_size=e.finetune_batch_size,
            learning_rate=e.finetune_lr,
            encoder_lr_scale=e.encoder_lr_scale,
            patience=e.finetune_patience,
            seed=seed,
            name=name,
        )

    return run


def run_protocol(cfg: AudioConfig) -> dict:
    """The held-out-group protocol of ssl_modal/audio/protocol.py with this recipe's pretraining and probes."""
    from ssl_modal.audio.protocol import rotate

    return rotate(
        cfg,
        pretrain_on,
        lambda model, clips: encode(model, clips, cfg.eval.batch_size),
        finetune_with(cfg) if cfg.eval.finetune_counts else None,
    )
