"""Audio recipe: pretrain a log-mel encoder (InfoNCE on DTW-mined neighbour pairs by default), probe, export.

    python recipes/audio_fsdd.py --config recipes/audio_fsdd.yaml [--demo] [key=value ...]

Headline (eval.rotate_column, ssl_modal/audio/protocol.py): each speaker held out in turn from pretraining
and from probe training, per seed; MFCC (whole clip, 3 time segments), random-init and SSL encoders, frozen
(linear, kNN) and fine-tuned, at several labelled clips per class: protocol.json, protocol.md,
label_efficiency.png. With eval.pretrain_all, also one pretraining on every clip: model.pt, metrics.jsonl,
loss_curve.png, tsne_digit.png, probe.json (digit with the test speaker seen in pretraining, speaker
identity) and embeddings.parquet.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ssl_modal.audio.config import AudioConfig
from ssl_modal.audio.export import export_manifest
from ssl_modal.audio.protocol import format_summary, write_protocol
from ssl_modal.audio.recipe import probe_features, probe_table, run_protocol, train
from ssl_modal.core.export import load_model
from ssl_modal.core.monitors import training_records
from ssl_modal.core.plots import plot_embedding_map, plot_training_curves
from ssl_modal.core.script import recipe_main


def pretrain_all(cfg: AudioConfig, out: Path) -> tuple[list, str]:
    """Pretrain on every clip (the model users keep), probe it, export its embeddings; (outputs, report)."""
    result = train(cfg)
    model = load_model(result.checkpoint)
    collected = probe_features(cfg, model)
    table = probe_table(cfg, collected)
    outputs = [
        ("model", result.checkpoint),
        ("metrics", out / "metrics.jsonl"),
        (
            "loss curve",
            plot_training_curves(
                out,
                out / "loss_curve.png",
                f"audio pretraining ({out.name})",
                loss_label="InfoNCE or BYOL / L1 per masked frame+bin / cross-entropy",
                losses=[
                    ("neighbour/loss", "neighbour pairs"),
                    ("joint/loss", "joint embedding"),
                    ("masked_frames/loss", "masked frames"),
                    ("time_shift/loss", "time shift"),
                ],
                accuracies=[("time_shift/accuracy", "time-shift accuracy")],
            ),
        ),
    ]
    if cfg.eval.tsne:
        outputs.append(
            (
                "t-SNE by digit",
                plot_embedding_map(
                    collected["features"]["SSL encoder"],
                    collected["digit"],
                    out / "tsne_digit.png",
                    "SSL encoder embeddings (t-SNE), by digit",
                    legend_title="digit",
                    seed=cfg.train.seed,
                ),
            )
        )
    outputs.append(("probe table", table.to_json(out / "probe.json")))
    outputs.append(
        (
            "embeddings",
            export_manifest(
                model,
                cfg.data.manifest,
                out / "embeddings.parquet",
                window_seconds=cfg.data.window_seconds,
                path_column=cfg.data.path_column,
                batch_size=cfg.eval.batch_size,
            ),
        )
    )
    last = (training_records(out) or [{}])[-1]
    parts = [
        f"{name} {last[key]:.3f}"
        for key, name in (
            ("neighbour/loss", "neighbour pairs"),
            ("joint/loss", "joint"),
            ("masked_frames/loss", "masked frames"),
            ("time_shift/loss", "time shift"),
            ("time_shift/accuracy", "time-shift accuracy"),
        )
        if key in last
    ]
    report = (
        f"\nprobes on {cfg.data.manifest} ({len(collected['digit'])} clips, frozen embeddings of the encoder "
        f"pretrained on every clip; the digit probe's test speaker was seen in pretraining):\n{table}\n"
        f"final losses at step {result.step}: {', '.join(parts)}"
    )
    return outputs, report


def run(cfg: AudioConfig) -> None:
    out = Path(cfg.train.output_dir)
    start = time.perf_counter()
    outputs, report = pretrain_all(cfg, out) if cfg.eval.pretrain_all else ([], "")
    trained = time.perf_counter()
    if report:
        print(report)
    if cfg.eval.rotate_column or cfg.eval.test is not None:
        protocol = run_protocol(cfg)
        outputs += list(write_protocol(protocol, out, f"digit on a held-out {cfg.eval.rotate_column}").items())
        print(
            f"\nheadline: digit on a {cfg.eval.rotate_column} seen by neither pretraining nor the probe "
            f"(held out in turn: {', '.join(protocol['held_out'])}; seeds {protocol['seeds']}):"
        )
        print(format_summary(protocol["summary"]))
    print(
        f"time: pretraining on every clip and its probes {trained - start:.0f} s, protocol "
        f"{time.perf_counter() - trained:.0f} s, total {time.perf_counter() - start:.0f} s"
    )
    print("written:")
    for name, path in outputs:
        print(f"  {name:<16} {path}")


def main(argv: list[str] | None = None) -> int:
    return recipe_main(run, AudioConfig, "recipes/audio_fsdd.yaml", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
