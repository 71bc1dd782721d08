"""Video throughput: decode frames/s (our reader vs a plain PyAV loop), training clips/s (ssl_modal.Trainer vs a
plain PyTorch loop), and label-propagation frames/s at 240p (vs feature extraction alone).

    python bench/video_bench.py            # about 1 min on 2 idle CPU cores; writes bench/results/video_bench.json
    python bench/video_bench.py --quick    # ~20 s smoke run (JSON to the temp dir)
    python bench/video_bench.py --propagation   # propagation rows only (bench/results/video_propagation.json)

Every reference is measured in the same process, alternating with the measured variant in rounds, and
medians are reported, so load from other processes hurts both sides alike (foreign CPU is recorded).
Data: the shared DAVIS clips (../shared/data/video/clips, 428x240 H.264) and DAVIS frames when present,
otherwise videos generated here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, ROOT, ForeignCPU, machine_info, matmul_peak, median, summary, table, write_json  # noqa: E402
from ssl_modal.core.trainer import TrainConfig, Trainer  # noqa: E402
from ssl_modal.video.config import ColorizationConfig  # noqa: E402
from ssl_modal.video.data import ClipDataset, fit_centres  # noqa: E402
from ssl_modal.video.davis import load_sequence  # noqa: E402
from ssl_modal.video.io import read_frames  # noqa: E402
from ssl_modal.video.model import build_video_model  # noqa: E402
from ssl_modal.video.propagate import (
    encoder_features,
    extract,
    lab_pooled_features,
    local_mask,
    propagate,  # noqa: E402
    propagate_step,
)

SHARED = ROOT.parent / "shared" / "data" / "video"
SMALL = (120, 214)  # resize-at-decode target (height, width)
RADIUS = 5  # propagation radius (feature cells) of the recipes' headline setting


def clip_files(workdir: Path) -> tuple[list[Path], str]:
    files = sorted((SHARED / "clips").glob("*.mp4"))
    if files:
        return files, "shared DAVIS clips (428x240 H.264, 24 fps)"
    import av

    path = workdir / "generated.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 428, 240, "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(80):
            frame = np.clip(rng.normal(120, 40, (240, 428, 3)) + i, 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return [path], "a generated 428x240 H.264 clip (shared clips absent)"


def pyav_loop(path: Path, size: tuple[int, int] | None) -> int:
    """The reference: decode every frame with PyAV to RGB numpy (resized by libswscale when `size`)."""
    import av

    n = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if size is None:
                frame.to_ndarray(format="rgb24")
            else:
                frame.to_ndarray(format="rgb24", width=size[1], height=size[0])
            n += 1
    return n


def bench_decode(files: list[Path], rounds: int) -> dict:
    variants = {
        "ours (decord get_batch), full size": lambda p: len(read_frames(p)),
        "plain PyAV loop, full size": lambda p: pyav_loop(p, None),
        f"ours, resized at decode to {SMALL[1]}x{SMALL[0]}": lambda p: len(read_frames(p, size=SMALL)),
        f"plain PyAV loop, resized to {SMALL[1]}x{SMALL[0]}": lambda p: pyav_loop(p, SMALL),
    }
    samples = {k: [] for k in variants}
    foreign = []
    for _ in range(rounds):
        for name, fn in variants.items():
            with ForeignCPU() as cpu:
                t0 = time.perf_counter()
                frames = sum(fn(p) for p in files)
                samples[name].append(frames / (time.perf_counter() - t0))
            foreign.append(cpu.fraction)
    names = list(variants)
    return {
        "frames_per_s": {k: summary(v) for k, v in samples.items()},
        "frames_per_pass": frames,
        "ratio_full": median(samples[names[0]]) / median(samples[names[1]]),
        "ratio_resized": median(samples[names[2]]) / median(samples[names[3]]),
        "foreign_cpu_fraction_median": median([f for f in foreign if f is not None] or [0.0]),
    }


def training_setup(files: list[Path], batch: int):
    videos = {str(p): read_frames(p, size=(128, 224)) for p in files}
    color = ColorizationConfig()
    config = {
        "encoder": {"widths": [32, 64, 128], "blocks": 1, "embed_dim": 64},
        "colorization": {"weight": 1.0, "centres": fit_centres(videos, color), "temperature": 1.0},
        "frame_order": {"weight": 0.0},
    }
    return ClipDataset(videos, color), config


def plain_loop(data, config, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_video_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=g).tolist()
    t0 = None
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            t0 = time.perf_counter()
        idx = order[(step * batch) % (len(order) - batch) :][:batch]
        loss = model(model.collate([data[i] for i in idx]))["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def trainer_run(data, config, batch: int, steps: int, workdir: Path) -> float:
    torch.manual_seed(0)
    model = build_video_model(config)
    marks = []
    objective = model.objectives["color"]
    original = objective.forward

    def timed(encoder, b):  # a mark at the start of every step's forward
        marks.append(time.perf_counter())
        return original(encoder, b)

    objective.forward = timed
    out = Path(tempfile.mkdtemp(dir=workdir))
    Trainer(
        TrainConfig(
            output_dir=str(out),
            max_steps=steps + 3,
            batch_size=batch,
            progress=False,
            tensorboard=False,
            monitor_every=50,
            log_every=10,
            checkpoint_every=10_000,
            resume=False,
        )
    ).fit(model, data, model.collate)
    return steps * batch / (marks[steps + 2] - marks[2])


def forward_flops(config, batch_frames: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = build_video_model(config)
    with FlopCounterMode(display=False) as counter:
        model({"frames": batch_frames})
    return float(counter.get_total_flops())


def bench_training(files, rounds: int, steps: int, batch: int, workdir: Path) -> dict:
    data, config = training_setup(files, batch)
    samples = {"ssl_modal.Trainer": [], "plain PyTorch loop": []}
    for _ in range(rounds):
        samples["ssl_modal.Trainer"].append(trainer_run(data, config, batch, steps, workdir))
        samples["plain PyTorch loop"].append(plain_loop(data, config, batch, steps))
    fwd = forward_flops(config, model_batch := torch.as_tensor(np.stack([data[i]["frames"] for i in range(batch)])))
    ours = median(samples["ssl_modal.Trainer"])
    return {
        "clips_per_s": {k: summary(v) for k, v in samples.items()},
        "ratio_trainer_vs_plain": ours / median(samples["plain PyTorch loop"]),
        "batch_clips": batch,
        "frames_per_clip": int(model_batch.shape[1]),
        "input_hw": [128, 224],
        "forward_flops_per_clip": fwd / batch,
        "training_flops_per_s": 3 * fwd / batch * ours,
    }


def bench_propagation(rounds: int, workdir: Path) -> dict:
    root = SHARED / "davis"
    if (root / "JPEGImages" / "blackswan").is_dir():
        seq = load_sequence(root, "blackswan", max_frames=30)
        frames, mask, source = seq.frames, seq.masks[0], "shared DAVIS blackswan, 30 frames, 427x240"
    else:
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, (30, 240, 427, 3), dtype=np.uint8)
        mask = np.zeros((240, 427), bool)
        mask[80:160, 150:250] = True
        source = "generated 427x240 noise frames (shared DAVIS absent)"
    torch.manual_seed(0)
    encoder = build_video_model(
        {
            "encoder": {"widths": [32, 64, 128], "blocks": 1, "embed_dim": 64},
            "colorization": {"weight": 1.0, "centres": [[0.0, 0.0]] * 16},
        }
    ).encoder.eval()
    feats = encoder_features(encoder)
    video = torch.as_tensor(frames)
    torch.manual_seed(0)
    native4 = build_video_model(
        {
            "encoder": {"widths": [32, 64, 128], "embed_dim": 64, "channels": "Lab", "strides": [2, 2, 1]},
            "colorization": {"weight": 1.0, "centres": [[0.0, 0.0]] * 16},
        }
    ).encoder.eval()
    feats4 = encoder_features(native4)

    def features_only() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(video), 8):
                feats(video[i : i + 8])
        return len(video) / (time.perf_counter() - t0)

    def dense_reference(radius: float) -> float:
        """The previous implementation: one dense masked (hw x C*hw) affinity and top-k per frame."""
        t0 = time.perf_counter()
        with torch.no_grad():
            f = torch.cat([feats(video[i : i + 8]) for i in range(0, len(video), 8)])
            f = torch.nn.functional.normalize(f, dim=1)
            t, _, h, w = f.shape
            flat = f.flatten(2).transpose(1, 2)
            fg = torch.as_tensor(mask, dtype=torch.float32)[None, None]
            fg = torch.nn.functional.adaptive_avg_pool2d(fg, (h, w))
            labels = [torch.stack([1 - fg.flatten(), fg.flatten()], -1)]
            allowed = local_mask(h, w, radius)
            for i in range(1, t):
                ctx = [0] + list(range(max(1, i - 5), i))
                labels.append(
                    propagate_step(flat[i], flat[ctx], torch.stack([labels[j] for j in ctx]), 10, 0.05, allowed)
                )
        return len(video) / (time.perf_counter() - t0)

    variants = {
        f"propagation, encoder features, radius {RADIUS} (local windows)": lambda: propagate(
            feats, frames, mask, 5, 10, RADIUS, 0.05
        )[1],
        "encoder feature extraction only": features_only,
        "propagation, encoder features, radius 12 (local windows)": lambda: propagate(
            feats, frames, mask, 5, 10, 12, 0.05
        )[1],
        "propagation, encoder features, radius 12 (dense masked affinity, before)": lambda: dense_reference(12),
        f"propagation, pooled Lab features, radius {RADIUS}": lambda: propagate(
            lab_pooled_features(8), frames, mask, 5, 10, RADIUS, 0.05
        )[1],
        # stride 4 (the video_walk headline's stride), radius 6: the native stride-4 encoder vs the stride-8 one
        # on 2x upsampled frames (session 12's headline), similarities in float32 and bfloat16
        "stride 4, radius 6: native stride-4 encoder, float32": lambda: propagate(feats4, frames, mask, 5, 10, 6, 0.05)[
            1
        ],
        "stride 4, radius 6: native stride-4 encoder, bfloat16 similarities": lambda: propagate(
            feats4, frames, mask, 5, 10, 6, 0.05, dtype=torch.bfloat16
        )[1],
        "stride 4, radius 6: stride-8 encoder on 2x upsampled frames, float32": lambda: propagate(
            encoder_features(encoder, 4), frames, mask, 5, 10, 6, 0.05
        )[1],
        "stride 4, radius 6: pooled Lab features, float32": lambda: propagate(
            lab_pooled_features(4), frames, mask, 5, 10, 6, 0.05
        )[1],
        "stride 4: native stride-4 encoder feature extraction only": lambda: len(frames) / extract(feats4, frames)[1],
    }
    samples = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(fn())
    names = list(variants)
    return {
        "source": source,
        "frames": len(frames),
        "settings": {"context": 5, "topk": 10, "radius": RADIUS},
        "frames_per_s": {k: summary(v) for k, v in samples.items()},
        "ratio_propagation_vs_features": median(samples[names[0]]) / median(samples[names[1]]),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--propagation", action="store_true", help="label propagation only (bench/results/video_propagation.json)"
    )
    args = parser.parse_args(argv)
    if args.propagation:
        with tempfile.TemporaryDirectory() as tmp:
            prop = {"machine": machine_info(), "propagation": bench_propagation(1 if args.quick else 3, Path(tmp))}
        write_json(RESULTS / "video_propagation.json", prop)
        p = prop["propagation"]
        print(f"label propagation at 240p ({p['source']}; context 5, top-10, stride 8 unless named):")
        print(table(["variant", "frames/s"], [[k, f"{v['median']:.1f}"] for k, v in p["frames_per_s"].items()]))
        return prop
    rounds, steps, batch = (1, 4, 4) if args.quick else (3, 12, 8)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        files, source = clip_files(workdir)
        files = files[:2] if args.quick else files
        peak = matmul_peak(repeats=4)
        report = {
            "machine": machine_info(),
            "matmul_peak_flops_per_s": peak["flops_per_s"],
            "decode_source": source,
            "decode_files": [p.name for p in files],
            "decode": bench_decode(files, rounds),
            "training": bench_training(files[:4], rounds, steps, batch, workdir),
            "propagation": bench_propagation(rounds, workdir),
        }
    report["training"]["fraction_of_matmul_peak"] = report["training"]["training_flops_per_s"] / peak["flops_per_s"]
    path = (Path(tempfile.gettempdir()) if args.quick else RESULTS) / "video_bench.json"
    write_json(path, report)
    print_report(report)
    print(f"\nwritten: {path}")
    return report


def print_report(r: dict) -> None:
    d, t, p = r["decode"], r["training"], r["propagation"]
    print(f"decode ({r['decode_source']}; {d['frames_per_pass']} frames per pass; median of rounds):")
    print(table(["variant", "frames/s"], [[k, f"{v['median']:.0f}"] for k, v in d["frames_per_s"].items()]))
    print(
        f"ratio ours / PyAV: full size {d['ratio_full']:.2f}x, resized {d['ratio_resized']:.2f}x "
        f"(foreign CPU {d['foreign_cpu_fraction_median']:.0%})"
    )
    print(f"\ntraining (colorization, batch {t['batch_clips']} clips x {t['frames_per_clip']} frames at 224x128):")
    print(table(["variant", "clips/s"], [[k, f"{v['median']:.2f}"] for k, v in t["clips_per_s"].items()]))
    print(
        f"ratio Trainer / plain loop {t['ratio_trainer_vs_plain']:.2f}; {t['training_flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"= {t['fraction_of_matmul_peak']:.0%} of the fp32 matmul peak "
        f"({r['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s)"
    )
    print(f"\nlabel propagation at 240p ({p['source']}; context 5, top-10, stride 8 unless named):")
    print(table(["variant", "frames/s"], [[k, f"{v['median']:.1f}"] for k, v in p["frames_per_s"].items()]))
    print(f"ratio propagation / feature extraction alone: {p['ratio_propagation_vs_features']:.2f}")


if __name__ == "__main__":
    main()
