"""MLM pretraining throughput: ssl_modal.Trainer vs HuggingFace Trainer vs plain PyTorch loops.

    python bench/mlm_throughput.py                  # full run (~9-10 min on 2 idle CPU cores)
    python bench/mlm_throughput.py --quick          # ~1 min smoke run (JSON to the temp dir)
    python bench/mlm_throughput.py --steps 16 --warmup 3 --repeats 3 --variants cd
    python bench/mlm_throughput.py --variants cep --autocast bf16 --out bench/results/mlm_throughput_cep_bf16.json

One BERT (4 layers x 256, 4 heads, FFN 1024, BERT-uncased vocabulary size), batch 32 x 128 tokens of
real AG News text, 15 % masking, AdamW. Variants, alternated in rounds (a, b, c, d, a, b, ...):
  a  HuggingFace transformers.Trainer, BertForMaskedLM, DataCollatorForLanguageModeling
  b  plain PyTorch loop, HF BertForMaskedLM(labels=...): LM head at all positions
  c  plain PyTorch loop over our text SSLModel: LM head only at masked positions
  d  ssl_modal.Trainer over the same SSLModel (everything a real run does except progress bar/TensorBoard)
  e  as c, each batch padded only to its longest text (what the recipe's TextCollate does)
  p  as c on packed rows (data.pack: true): whole texts side by side in rows of 128 tokens, block-diagonal
     attention and position resets; a row holds ~2.9 texts (96 % real tokens), so a step sees ~2.9x the real tokens
a-e see the same batches in the same order and (same seed, same draws) the same masks; p sees packed rows
of the same corpus. `tokens/s` counts rows x 128 positions per second for every variant (e computes fewer);
`real tokens/s` counts non-padding tokens: the throughput that matters, and what the p/c, p/e targets compare.
Each sample times `--steps` optimizer steps after `--warmup` steps, between two marks taken at the
same point of two steps `--steps` apart. Writes bench/results/mlm_throughput.json.
Corpus, vocabulary and models: bench/mlm_data.py; the variants: bench/mlm_runners.py.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    RESULTS,
    ForeignCPU,
    load_average,
    machine_info,
    matmul_peak,
    si,
    summary,
    table,
    write_json,
)
from bench.mlm_data import (  # noqa: E402
    BATCH,
    FFN,
    HEADS,
    HIDDEN,
    LAYERS,
    LR,
    MLM_PROB,
    SEED,
    SEQ,
    VOCAB_SIZE,
    WEIGHT_DECAY,
    prepare,
    stream_batch,
)
from bench.mlm_runners import RUNNERS  # noqa: E402

VARIANTS = {
    "a": "HF Trainer (BertForMaskedLM)",
    "b": "plain loop, HF BertForMaskedLM",
    "c": "plain loop, our SSLModel",
    "d": "ssl_modal.Trainer, our SSLModel",
    "e": "plain loop, our SSLModel, pad to longest",
    "p": "plain loop, our SSLModel, packed rows",
}
TARGETS = {"d/a": 1.2, "d/b": 0.95, "d/c": 0.95}
REAL_TARGETS = {"p/e": 2.0, "p/c": 2.0}  # real (non-padding) tokens/s: packed vs padded batches
FLOP_FORMULA = (
    "training FLOPs = 3 x forward; forward per sequence = L*(2*T*(4*d^2 + 2*d*d_ff) + 2*2*T^2*d) + head, "
    "head = 2*(d^2 + d*V) per position where it is computed (all T positions for HF BertForMaskedLM, only "
    "the masked positions for our MaskedLM); 'model FLOPs' count the head at all T positions for every variant"
)


# ---- FLOPs --------------------------------------------------------------------------------------
def flops_per_step(masked_per_seq: float | None) -> float:
    """Training FLOPs of one step (batch BATCH); head at all positions when masked_per_seq is None."""
    body = LAYERS * (2 * SEQ * (4 * HIDDEN**2 + 2 * HIDDEN * FFN) + 2 * 2 * SEQ**2 * HIDDEN)
    head_positions = SEQ if masked_per_seq is None else masked_per_seq
    head = head_positions * 2 * (HIDDEN**2 + HIDDEN * VOCAB_SIZE)
    return 3.0 * BATCH * (body + head)


# ---- main ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps per sample (default 10; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before them (default 2; quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="rounds of a,b,c,d (default 5; quick 1)")
    p.add_argument("--variants", default="abcdep", help="subset to run, e.g. 'cep' (ratios need their pairs)")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run; JSON goes to the temp dir")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/mlm_throughput.json)")
    p.add_argument(
        "--autocast",
        choices=("no", "bf16"),
        default="no",
        help="run every variant inside torch.autocast('cpu', bfloat16) (fast only where the CPU has AVX512-BF16/AMX)",
    )
    args = p.parse_args(argv)
    quick = {"steps": 3, "warmup": 1, "repeats": 1}
    full = {"steps": 10, "warmup": 2, "repeats": 5}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1:
        p.error("--steps, --warmup and --repeats must be >= 1")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown or not args.variants:
        p.error(f"--variants: unknown {sorted(unknown)}; choose from {''.join(VARIANTS)}")
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "ssl_modal_bench" / "mlm_throughput_quick.json"
            if args.quick
            else RESULTS / "mlm_throughput.json"
        )
    return args


def run_rounds(args, ctx: dict, workdir: Path) -> dict:
    """Rounds of the variants; per variant: tokens/s samples, timed step times, loads, masks, extras."""
    total = args.warmup + args.steps
    runs = {
        v: {"samples": [], "step_times": [], "loads": [], "foreign": [], "masked": None, "extra": {}}
        for v in args.variants
    }
    for rnd in range(args.repeats):
        for v in args.variants:
            run_dir = workdir / f"{v}{rnd}"
            precision = (
                torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "bf16" else contextlib.nullcontext()
            )
            with ForeignCPU() as foreign, precision:
                clock, masked, extra = RUNNERS[v](ctx, total, run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)  # our trainer's final checkpoint: ~130 MB
            seconds = clock.seconds(args.warmup, args.steps)
            r = runs[v]
            r["samples"].append(args.steps * BATCH * SEQ / seconds)
            per_step = extra.get("real_tokens_per_step") or [
                int(stream_batch(ctx, s)["attention_mask"].sum()) for s in range(total)
            ]
            r.setdefault("real", []).append(sum(per_step[args.warmup : total]) / seconds)
            r["step_times"].append(clock.step_times()[args.warmup : total])
            r["loads"].append((load_average() or [None])[0])
            r["foreign"].append(None if foreign.fraction is None else round(foreign.fraction, 3))
            r["masked"], r["extra"] = masked[:total] or r["masked"], extra
            print(
                f"  round {rnd + 1}/{args.repeats} {v}: {r['samples'][-1]:8.0f} tokens/s "
                f"({seconds / args.steps:.3f} s/step)  load {r['loads'][-1]}, other processes' CPU "
                f"{'?' if foreign.fraction is None else f'{foreign.fraction:.0%}'}",
                flush=True,
            )
            gc.collect()
    return runs


def build_report(args, machine: dict, info: dict, peaks: list[dict], runs: dict) -> dict:
    # masks: a, b and c agree step by step (same stream, same seed, same draws); d draws like c
    seen = [r["masked"] for v, r in runs.items() if r["masked"] and v in "abcd"]  # e, p: other shapes
    timed = seen[0][args.warmup :] if seen else None
    masked_per_seq = sum(timed) / (len(timed) * BATCH) if timed else MLM_PROB * info["mean_real_tokens_per_seq"]
    peak = max(p["flops_per_s"] for p in peaks)
    model_flops = flops_per_step(None)
    results = {}
    for v, r in runs.items():
        med = summary(r["samples"])
        steps_per_s = med["median"] / (BATCH * SEQ)
        hw_flops = flops_per_step(None if v in "ab" else masked_per_seq)  # e, p: upper bound (T = SEQ)
        results[v] = {
            "label": VARIANTS[v],
            "tokens_per_s": med,
            "real_tokens_per_s": summary(r["real"]),
            "s_per_step_median": 1.0 / steps_per_s,
            "step_times_s": r["step_times"],
            "load_1m_after_samples": r["loads"],
            "other_processes_cpu_fraction": r["foreign"],
            "flops_per_step": hw_flops,
            "achieved_flops_per_s": hw_flops * steps_per_s,
            "achieved_fraction_of_peak": hw_flops * steps_per_s / peak,
            "model_flops_per_step": model_flops,
            "model_flops_per_s": model_flops * steps_per_s,
            "model_fraction_of_peak": model_flops * steps_per_s / peak,
            **r["extra"],
        }
    if "c" in results and "d" in results:
        # the trainer runs a collapse monitor every `monitor_every` steps (default 50), which a short timed
        # window may miss: report its amortised share of a trainer step
        from ssl_modal import TrainConfig

        every = TrainConfig().monitor_every
        results["d"]["monitor_every"] = every
        results["d"]["monitor_amortised_fraction"] = (
            results["c"]["monitor_call_s"] / (every * results["d"]["s_per_step_median"]) if every else 0.0
        )
    ratios = {}
    for name, target in TARGETS.items():
        num, den = name.split("/")
        if num in results and den in results:
            value = results[num]["tokens_per_s"]["median"] / results[den]["tokens_per_s"]["median"]
            per_round = [x / y for x, y in zip(runs[num]["samples"], runs[den]["samples"], strict=True)]
            ratios[name] = {"value": value, "target": target, "met": value >= target, "per_round": per_round}
    for name, target in REAL_TARGETS.items():
        num, den = name.split("/")
        if num in results and den in results:
            value = results[num]["real_tokens_per_s"]["median"] / results[den]["real_tokens_per_s"]["median"]
            per_round = [x / y for x, y in zip(runs[num]["real"], runs[den]["real"], strict=True)]
            ratios[f"{name} real tokens"] = {
                "value": value,
                "target": target,
                "met": value >= target,
                "per_round": per_round,
            }
    return {
        "benchmark": "mlm_throughput",
        "machine": machine,
        "load_average_end": load_average(),
        "config": {
            "layers": LAYERS,
            "hidden": HIDDEN,
            "heads": HEADS,
            "intermediate": FFN,
            "vocab_size": VOCAB_SIZE,
            "seq_len": SEQ,
            "batch_size": BATCH,
            "mlm_probability": MLM_PROB,
            "learning_rate": LR,
            "weight_decay": WEIGHT_DECAY,
            "seed": SEED,
            "dtype": "float32",
            "autocast": args.autocast,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "quick": args.quick,
            "order": "rounds of " + ",".join(args.variants),
        },
        "data": {
            **info,
            "masked_tokens_per_seq": round(masked_per_seq, 3),
            "identical_masks": all(m == seen[0] for m in seen) if seen else None,
        },
        "peak": {"flops_per_s": peak, "runs": peaks},
        "flop_formula": FLOP_FORMULA,
        "variants": results,
        "ratios": ratios,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    started = time.perf_counter()
    machine = machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads, "
        f"torch {machine['torch']}, transformers {machine['transformers']}, load {machine['load_average']}"
    )
    peak_args = {"sizes": (2048,) if args.quick else (2048, 4096), "repeats": 4 if args.quick else 6}
    peaks = [matmul_peak(**peak_args)]
    print(f"fp32 matmul peak: {si(peaks[0]['flops_per_s'], 'FLOP/s')}")
    with tempfile.TemporaryDirectory(prefix="mlm_bench_") as tmp:
        ctx = prepare(Path(tmp))
        info = ctx["info"]
        print(f"data: {info['corpus_source']}; vocab: {info['vocab_source']}")
        print(
            f"      {info['texts']:,} texts, {info['mean_real_tokens_per_seq']} real tokens/seq of {SEQ} "
            f"({info['truncated_fraction']:.1%} truncated)"
        )
        if (args.warmup + args.steps + 2) * BATCH > len(ctx["stream"]["input_ids"]):
            raise SystemExit(f"--warmup + --steps = {args.warmup + args.steps} needs more than one epoch of data")
        runs = run_rounds(args, ctx, Path(tmp))
    peaks.append(matmul_peak(**peak_args))
    report = build_report(args, machine, info, peaks, runs)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(args.out, report)
    print_report(report)
    print(f"wrote {args.out}")
    return report


def print_report(r: dict) -> None:
    peak = r["peak"]["flops_per_s"]
    rows = []
    for v, x in r["variants"].items():
        t = x["tokens_per_s"]
        rows.append(
            [
                f"{v}  {x['label']}",
                f"{t['median']:,.0f}",
                f"{t['min']:,.0f}-{t['max']:,.0f}",
                f"{x['real_tokens_per_s']['median']:,.0f}",
                f"{x['s_per_step_median']:.3f}",
                si(x["achieved_flops_per_s"], "FLOP/s"),
                f"{x['achieved_fraction_of_peak']:.1%}",
                si(x["model_flops_per_s"], "FLOP/s"),
                f"{x['model_fraction_of_peak']:.1%}",
            ]
        )
    print()
    print(
        table(
            [
                "variant",
                "tokens/s",
                "range",
                "real tokens/s",
                "s/step",
                "achieved FLOP/s",
                "% peak",
                "model FLOP/s",
                "% peak",
            ],
            rows,
        )
    )
    print(
        f"\nfp32 matmul peak {si(peak, 'FLOP/s')} ({r['machine']['torch_threads']} threads); "
        f"{r['data']['masked_tokens_per_seq']:.2f} masked positions/seq; identical masks across variants: "
        f"{r['data']['identical_masks']}; trainer read the same batches: "
        f"{r['variants'].get('d', {}).get('same_batches_as_stream')}"
    )
    print(f"FLOPs: {r['flop_formula']}")
    if r["ratios"]:
        rows = [
            [
                k,
                f"{x['value']:.2f}",
                f">= {x['target']}",
                "met" if x["met"] else "MISSED",
                ", ".join(f"{y:.2f}" for y in x["per_round"]),
            ]
            for k, x in r["ratios"].items()
        ]
        print()
        print(table(["ratio", "median", "target", "", "per round"], rows, align="lrrll"))
    busy = {
        v: f"{max(f or 0 for f in x['other_processes_cpu_fraction']):.0%}"
        for v, x in r["variants"].items()
        if max(f or 0 for f in x["other_processes_cpu_fraction"]) > 0.1
    }
    if busy:
        print(
            f"\nWARNING: other processes took over 10 % of the CPUs during some samples ({busy}): "
            "those samples are slow for reasons outside the benchmark; rerun on an idle machine"
        )
    print(
        f"\nload average at start {r['machine']['load_average']}, at end {r['load_average_end']}; "
        f"wall {r['wall_s']:.0f} s"
    )


if __name__ == "__main__":
    main()
