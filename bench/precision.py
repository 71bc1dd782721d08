"""bf16 vs fp32 on this CPU: matmul peaks in both precisions (start and end of the run) and one training step of
ssl_modal.Trainer on a small BERT MLM under `train.autocast` no / bf16, alternated in rounds.

    python bench/precision.py            # ~3 min on 2 idle cores with native bf16; far longer without it
    python bench/precision.py --quick    # smoke run, JSON to the temp dir

Tells whether `train.autocast: auto` should choose bf16 here (see ssl_modal/core/precision.py): the ratio of
the bf16 to the fp32 peak, and of the training step rates. Writes bench/results/precision.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    StepClock,
    TensorRows,
    machine_info,
    matmul_peak,
    parse_round_args,
    run_rounds,
    stack_collate,
    summary,
    table,
    write_json,
)
from ssl_modal.core.precision import cpu_flags, cpu_has_native_bf16, resolve_autocast  # noqa: E402

LAYERS, HIDDEN, HEADS, FFN, SEQ, BATCH, VOCAB = 2, 256, 4, 1024, 64, 16, 8000


def make_data(vocab_size: int, n: int = 512) -> TensorRows:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (n, SEQ), generator=g)
    return TensorRows(
        {
            "input_ids": ids,
            "attention_mask": torch.ones(n, SEQ, dtype=torch.long),
            "special_tokens_mask": torch.zeros(n, SEQ, dtype=torch.long),
        }
    )


def build_model():
    from ssl_modal.text import MLMConfig, ModelConfig, build_text_model, text_model_config
    from ssl_modal.text.tokenizer import train_wordpiece

    words = " ".join(f"w{i}" for i in range(VOCAB))
    tokenizer = train_wordpiece([words] * 2, vocab_size=VOCAB, min_frequency=1, max_length=SEQ)
    cfg = ModelConfig(
        hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS, intermediate_size=FFN, max_length=SEQ, dropout=0.1
    )
    model = build_text_model(text_model_config(cfg, MLMConfig(probability=0.15), tokenizer))
    return model, tokenizer


def runner(autocast: str):
    def run(ctx, total: int, workdir: Path) -> StepClock:
        from ssl_modal import TrainConfig, Trainer

        clock = StepClock()

        def collate(items):
            clock.mark()
            return stack_collate(items)

        torch.manual_seed(0)
        model, _ = build_model()
        cfg = TrainConfig(
            output_dir=str(workdir),
            max_steps=total + 1,
            batch_size=BATCH,
            autocast=autocast,
            log_every=10,
            checkpoint_every=10**9,
            progress=False,
            tensorboard=False,
            resume=False,
            monitor_every=0,
        )
        Trainer(cfg).fit(model, ctx["data"], collate)
        return clock

    return run


def main(argv=None) -> dict:
    args = parse_round_args(
        __doc__, "precision", {"steps": 8, "warmup": 2, "repeats": 3}, {"steps": 2, "warmup": 1, "repeats": 1}, argv
    )
    machine = machine_info()
    flags = cpu_flags()
    print(
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, load {machine['load_average']}, native bf16: "
        f"{cpu_has_native_bf16(flags)}"
    )
    peak_sizes = {"sizes": (1024,), "repeats": 3}
    peaks = {"start": {d: matmul_peak(dtype=getattr(torch, d), **peak_sizes) for d in ("float32", "bfloat16")}}
    ctx = {"data": make_data(build_model()[1].vocab_size)}
    t0 = time.perf_counter()
    samples, foreign = run_rounds({"fp32": runner("no"), "bf16": runner("bf16")}, ctx, args, "ssl_modal_prec_")
    peaks["end"] = {d: matmul_peak(dtype=getattr(torch, d), **peak_sizes) for d in ("float32", "bfloat16")}
    steps = {v: summary(s) for v, s in samples.items()}
    report = {
        "machine": machine,
        "native_bf16": cpu_has_native_bf16(flags),
        "auto_chooses": resolve_autocast("auto", torch.device("cpu"))[0],
        "peaks_flops_per_s": {when: {d: p["flops_per_s"] for d, p in ps.items()} for when, ps in peaks.items()},
        "bf16_over_fp32_peak": [ps["bfloat16"]["flops_per_s"] / ps["float32"]["flops_per_s"] for ps in peaks.values()],
        "s_per_step": steps,
        "foreign_cpu": foreign,
        "bf16_speed_over_fp32": steps["fp32"]["median"] / steps["bf16"]["median"],
        "settings": {
            "model": f"BERT {LAYERS}x{HIDDEN}, {HEADS} heads, FFN {FFN}, vocab {VOCAB}",
            "batch": f"{BATCH} x {SEQ} tokens",
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "wall_s": time.perf_counter() - t0,
    }
    rows = [
        [when, f"{p['float32'] / 1e9:.1f}", f"{p['bfloat16'] / 1e9:.2f}", f"{p['bfloat16'] / p['float32']:.3f}"]
        for when, p in report["peaks_flops_per_s"].items()
    ]
    print(table(["matmul peak", "fp32 GFLOP/s", "bf16 GFLOP/s", "bf16/fp32"], rows))
    print(
        table(
            ["training step", "median s/step", "min", "max"],
            [[v, f"{s['median']:.4f}", f"{s['min']:.4f}", f"{s['max']:.4f}"] for v, s in steps.items()],
        )
    )
    print(
        f"bf16 step speed / fp32: {report['bf16_speed_over_fp32']:.3f}; train.autocast=auto chooses "
        f"'{report['auto_chooses']}' here"
    )
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
