"""Audio pretraining throughput: log-mel frames/s, the frontend's share of a step, FLOP/s vs the matmul peak.

    python bench/audio_throughput.py            # full run (~2-3 min on 2 idle CPU cores)
    python bench/audio_throughput.py --quick    # ~30 s smoke run (JSON to the temp dir)

The recipe's encoder (log-mel 40 bins, 2 stride-2 convs, 4 x 128 Transformer) with both objectives, batch 32
real FSDD clips (../shared/data/audio/fsdd, else examples/data/audio), AdamW, fp32. Variants, alternated in
rounds (a, b, f, a, b, f, ...):
  a  plain PyTorch loop over the audio SSLModel (collate, forward, backward, AdamW step)
  b  ssl_modal.Trainer over the same model and batches (progress bar and TensorBoard off)
  f  the frontend alone (log-mel + normalisation) on the same batches, no gradients
Each sample times `--steps` steps after `--warmup`. Frames/s counts real (unpadded) log-mel frames.
FLOPs per training step are counted once with torch.utils.flop_counter.FlopCounterMode (matmuls,
convolutions, attention; the FFT is not counted) and divided by the measured step time; the fp32
`torch.mm` peak is measured in the same run (start and end, the higher is used).
Writes bench/results/audio_throughput.json.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    ROOT,
    StepClock,
    load_average,
    matmul_peak,
    parse_round_args,
    run_rounds,
    si,
    speed_ratios,
    start_run,
    summary,
    table,
    write_json,
)

SHARED = ROOT.parent / "shared" / "data" / "audio" / "fsdd" / "metadata.csv"
SAMPLE = ROOT / "examples" / "data" / "audio" / "manifest.csv"
BATCH, LR, SEED = 32, 1e-3, 0
VARIANTS = {"a": "plain loop, audio SSLModel", "b": "ssl_modal.Trainer, audio SSLModel", "f": "frontend only (no grad)"}
TARGETS = {"b/a": 0.9}


def prepare(n_steps: int) -> dict:
    """Real clips, the model config (with statistics) and the batch stream the variants share."""
    from ssl_modal.audio import AudioConfig, audio_model_config
    from ssl_modal.audio.recipe import frontend_stats, read_segments

    cfg = AudioConfig()
    cfg.train.progress = False
    manifest, path_column, source = (
        (SHARED, "file", "shared FSDD") if SHARED.is_file() else (SAMPLE, "path", "examples/data/audio sample")
    )
    cfg.data.manifest, cfg.data.path_column = str(manifest), path_column
    segments = read_segments(cfg)
    config = audio_model_config(cfg, frontend_stats(cfg, segments))
    order = np.random.default_rng(SEED).permutation(len(segments))
    need = n_steps * BATCH
    stream = [segments[i] for i in np.resize(order, need)]
    frames = [len(s["wave"]) // cfg.frontend.hop_length + 1 for s in stream]
    return {
        "config": config,
        "stream": stream,
        "frames": frames,
        "info": {
            "source": source,
            "manifest": str(manifest),
            "clips": len(segments),
            "mean_frames_per_clip": round(float(np.mean(frames)), 2),
        },
    }


def fresh_model(config: dict):
    from ssl_modal.audio import build_audio_model

    torch.manual_seed(SEED)
    return build_audio_model(config)


def run_plain(ctx: dict, total: int, _dir: Path) -> StepClock:
    from ssl_modal.audio import audio_collate

    model = fresh_model(ctx["config"]).train()
    model.set_generator(torch.Generator().manual_seed(SEED))
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    clock = StepClock()
    clock.mark()
    for i in range(total):
        batch = audio_collate(ctx["stream"][i * BATCH : (i + 1) * BATCH])
        loss = model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
    return clock


def run_trainer(ctx: dict, total: int, run_dir: Path) -> StepClock:
    """The trainer reads batches through its sampler; the collate marks the clock as each step starts."""
    from ssl_modal import TrainConfig, Trainer
    from ssl_modal.audio import audio_collate

    clock = StepClock()

    def collate(items):
        clock.mark()
        return audio_collate(items)

    data = ctx["stream"][: total * BATCH + BATCH]
    cfg = TrainConfig(
        output_dir=str(run_dir),
        max_steps=total + 1,
        batch_size=BATCH,
        learning_rate=LR,
        warmup_steps=1,
        progress=False,
        tensorboard=False,
        log_every=10,
        checkpoint_every=10**9,
        seed=SEED,
        resume=False,
    )
    Trainer(cfg).fit(fresh_model(ctx["config"]), data, collate)
    return clock


def run_frontend(ctx: dict, total: int, _dir: Path) -> StepClock:
    from ssl_modal.audio import audio_collate

    model = fresh_model(ctx["config"])
    clock = StepClock()
    clock.mark()
    with torch.no_grad():
        for i in range(total):
            batch = audio_collate(ctx["stream"][i * BATCH : (i + 1) * BATCH])
            model.encoder.frontend(batch["wave"], batch["lengths"])
            clock.mark()
    return clock


RUNNERS = {"a": run_plain, "b": run_trainer, "f": run_frontend}


def count_flops(ctx: dict) -> float:
    """FLOPs of one training step (forward + backward) on the first batch."""
    from torch.utils.flop_counter import FlopCounterMode

    from ssl_modal.audio import audio_collate

    model = fresh_model(ctx["config"]).train()
    model.set_generator(torch.Generator().manual_seed(SEED))
    batch = audio_collate(ctx["stream"][:BATCH])
    with FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    return float(counter.get_total_flops())


def main(argv=None) -> dict:
    args = parse_round_args(
        __doc__,
        "audio_throughput",
        full={"steps": 20, "warmup": 3, "repeats": 3},
        quick={"steps": 5, "warmup": 2, "repeats": 1},
        argv=argv,
    )
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    machine, peak_args, peaks = start_run(args.quick)
    total = args.warmup + args.steps
    ctx = prepare(total + 2)
    flops = count_flops(ctx)
    print(
        f"fp32 matmul peak {si(peaks[0]['flops_per_s'], 'FLOP/s')}; data: {ctx['info']['source']}, "
        f"{ctx['info']['clips']} clips; {si(flops, 'FLOP')} per training step"
    )
    samples, foreign = run_rounds(RUNNERS, ctx, args, prefix="audio_bench_")
    peaks.append(matmul_peak(**peak_args))
    peak = max(x["flops_per_s"] for x in peaks)
    frames_per_step = float(np.mean(ctx["frames"][args.warmup * BATCH : total * BATCH])) * BATCH
    results = {}
    for v, secs in samples.items():
        s = summary(secs)["median"]
        results[v] = {
            "label": VARIANTS[v],
            "s_per_step": summary(secs),
            "frames_per_s": frames_per_step / s,
            "clips_per_s": BATCH / s,
            "other_processes_cpu_fraction": foreign[v],
        }
        if v != "f":
            results[v].update(achieved_flops_per_s=flops / s, achieved_fraction_of_peak=flops / s / peak)
    share = results["f"]["s_per_step"]["median"] / results["a"]["s_per_step"]["median"]
    ratios = speed_ratios(TARGETS, samples)
    report = {
        "benchmark": "audio_throughput",
        "machine": machine,
        "load_average_end": load_average(),
        "config": {
            "model": {k: ctx["config"][k] for k in ("frontend", "encoder", "weights")},
            "batch_size": BATCH,
            "learning_rate": LR,
            "dtype": "float32",
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "quick": args.quick,
        },
        "data": {**ctx["info"], "frames_per_step": frames_per_step},
        "peak": {"flops_per_s": peak, "runs": peaks},
        "flops_per_step": flops,
        "flop_counting": "torch.utils.flop_counter.FlopCounterMode, forward+backward of one step; FFT not counted",
        "frontend_share_of_step": share,
        "variants": results,
        "ratios": ratios,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, report)
    rows = [
        [
            f"{v}  {x['label']}",
            f"{x['frames_per_s']:,.0f}",
            f"{x['clips_per_s']:,.1f}",
            f"{x['s_per_step']['median']:.4f}",
            si(x["achieved_flops_per_s"], "FLOP/s") if v != "f" else "-",
            f"{x['achieved_fraction_of_peak']:.1%}" if v != "f" else "-",
        ]
        for v, x in results.items()
    ]
    print()
    print(table(["variant", "frames/s", "clips/s", "s/step", "achieved FLOP/s", "% of peak"], rows))
    print(f"\nfrontend share of a training step: {share:.1%}; fp32 matmul peak {si(peak, 'FLOP/s')}")
    for k, x in ratios.items():
        print(
            f"ratio {k} (trainer speed / plain loop): {x['value']:.2f} (target >= {x['target']}: "
            f"{'met' if x['met'] else 'MISSED'}); per round {', '.join(f'{y:.2f}' for y in x['per_round'])}"
        )
    print(
        f"load average at start {machine['load_average']}, at end {report['load_average_end']}; "
        f"wall {report['wall_s']:.0f} s\nwrote {args.out}"
    )
    return report


if __name__ == "__main__":
    main()
