"""Image-text aligner training throughput: pairs/s and FLOP/s vs the matmul peak, side by side with open_clip.

    python bench/aligner_throughput.py            # full run (~3-4 min on 2 idle CPU cores)
    python bench/aligner_throughput.py --quick    # smoke run (JSON to the temp dir)

Same tower sizes and batch for every variant: ViT-Ti/16 image tower (12 x 192, 3 heads, MLP 768) at 128 px and a
4 x 256 text tower (4 heads, MLP 1024), shared space 256, batch 64 real Flickr8k pairs
(../shared/data/images/flickr8k, else examples/data/flickr8k) decoded once to 128 px tensors, AdamW, fp32 unless said.
Variants, alternated in rounds (o, a, b, o, a, b, ...):
  o  open_clip 3.3 `CLIP` (its ViT + causal text transformer, its BPE tokenizer padding to 32 tokens) + `ClipLoss`
  a  plain PyTorch loop over the ssl_modal aligner (torchvision ViT + HF BERT, WordPiece padded to 32 tokens
     like open_clip; the recipes pad to the longest caption of the batch instead, which is cheaper)
  b  ssl_modal.Trainer over the same aligner and batches (progress bar off)
  ol open_clip LiT: the same open_clip CLIP with its text tower locked (`lock_text_tower()`): it still runs the
     text forward every step
  l  ssl_modal LiT: the same aligner with its text tower locked and its caption features cached once before the
     run (data.cache_text, what the LiT recipe does); a step runs the image tower and the text projection. The
     one-off feature pass is timed apart and printed.
  olb, lb  ol and l with forward and loss under `torch.autocast("cpu", torch.bfloat16)` (what `train.autocast:
     auto` picks on a CPU with native bf16); run only where the CPU has it (emulated bf16 is far slower).
     "best l / best ol" compares each LiT at its faster precision.
  lp the LiT *recipe's* image tower instead of the ViT (NOT the same-tower comparison): the patch dictionary
     (32 px, 256 centroids, 9x9 maps, MLP head 1024 -> 512) fitted on the run's images downsampled to 32 px, their
     maps cached, random map windows each step, cached caption features; fitting and caching are timed apart.
     "lp / best ol" compares it with open_clip's LiT at its faster precision; the quality of each is in
     docs/aligner.md (held-out t2i R@5: recipe 0.158, open_clip LiT ~0.144).
Captions are tokenized inside every timed step for all variants. FLOPs per training step are counted once per
variant with torch.utils.flop_counter.FlopCounterMode; the fp32 `torch.mm` peak is measured in the same run.
Writes bench/results/aligner_throughput.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    StepClock,
    load_average,
    matmul_peak,
    median,
    parse_round_args,  # noqa: E402
    run_rounds,
    si,
    speed_ratios,
    start_run,
    summary,
    table,
    write_json,
)

from ssl_modal.core.precision import cpu_has_native_bf16  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH, SIZE, LR = 64, 128, 5e-4
VARIANTS = {
    "o": "open_clip CLIP + ClipLoss",
    "a": "plain loop over the ssl_modal aligner",
    "b": "ssl_modal.Trainer over the same aligner",
    "ol": "open_clip LiT (locked text tower)",
    "l": "ssl_modal LiT (locked text tower, cached caption features)",
    "olb": "open_clip LiT, bf16 autocast",
    "lb": "ssl_modal LiT, bf16 autocast",
    "lp": "ssl_modal LiT recipe tower: patch dictionary, cached maps (NOT the ViT)",
}
TARGETS = {"a/o": 1.0, "b/o": 1.0, "b/a": 0.95, "l/ol": 2.0, "lb/olb": 2.0}
BF16 = {"olb", "lb"}


def precision(bf16: bool):
    """bf16 autocast on the CPU, or nothing (fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def load_pairs(n: int) -> tuple[list[torch.Tensor], list[str], str]:
    from ssl_modal.aligner.data import image_transform, load_image

    shared = REPO.parent / "shared" / "data" / "images" / "flickr8k"
    root = shared if (shared / "captions.csv").is_file() else REPO / "examples" / "data" / "flickr8k"
    frame = pd.read_csv(root / "captions.csv").iloc[:n]
    frame = pd.concat([frame] * (n // len(frame) + 1)).iloc[:n]
    transform = image_transform(SIZE, train=False)
    cache = {name: transform(load_image(root / "images" / name)) for name in frame["image"].unique()}
    return [cache[name] for name in frame["image"]], frame["caption"].tolist(), str(root)


def ours(captions: list[str], locked_text: bool = False):
    from ssl_modal.aligner.config import AlignerModelConfig, ImageTowerConfig, TextTowerConfig
    from ssl_modal.aligner.model import build_aligner_model
    from ssl_modal.aligner.tokenizer import train_wordpiece

    cfg = AlignerModelConfig(
        image=ImageTowerConfig(image_size=SIZE, patch_size=16, width=192, layers=12, heads=3),
        text=TextTowerConfig(width=256, layers=4, heads=4, max_length=32, vocab_size=4000, locked=locked_text),
        embed_dim=256,
    )
    config = dataclasses.asdict(cfg)
    config["tokenizer_json"] = train_wordpiece(captions, 4000)
    torch.manual_seed(0)
    model = build_aligner_model(config)
    model.collate.padding = "max_length"  # 32 tokens per caption, as open_clip computes: the same work per step
    return model


def open_clip_model():
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=256,
        vision_cfg=CLIPVisionCfg(layers=12, width=192, head_width=64, mlp_ratio=4, patch_size=16, image_size=SIZE),
        text_cfg=CLIPTextCfg(context_length=32, vocab_size=49408, width=256, heads=4, layers=4),
    )
    return model, open_clip.get_tokenizer("ViT-B-32", context_length=32), open_clip.ClipLoss()


def items(pixels, captions, start: int, n: int) -> list[dict]:
    return [{"pixel_values": pixels[i], "caption": captions[i], "group": i} for i in range(start, start + n)]


def open_clip_lit():
    model, tokenizer, loss_fn = open_clip_model()
    model.lock_text_tower()
    return model, tokenizer, loss_fn


def ours_lit(captions: list[str]):
    """The aligner with a locked text tower and each caption's tower feature computed once (timed apart)."""
    from ssl_modal.aligner.model import text_tower_features

    model = ours(captions, locked_text=True)
    start = time.perf_counter()
    features = text_tower_features(model, captions)
    return model, features, time.perf_counter() - start


def ours_patch_lit(pixels: list[torch.Tensor], captions: list[str]):
    """The LiT recipe's image tower (patch dictionary + MLP head) with the bench's locked text tower; the
    dictionary fit, the map cache and the caption features are computed once (timed apart)."""
    import torch.nn.functional as F

    from ssl_modal.aligner.config import AlignerModelConfig, ImageTowerConfig, TextTowerConfig
    from ssl_modal.aligner.model import build_aligner_model, text_tower_features
    from ssl_modal.aligner.tokenizer import train_wordpiece

    image = ImageTowerConfig(arch="patches", image_size=32, patch_size=6, centroids=256, grid=9, width=512, dropout=0.3)
    text = TextTowerConfig(width=256, layers=4, heads=4, max_length=32, vocab_size=4000, locked=True)
    config = dataclasses.asdict(AlignerModelConfig(image=image, text=text, embed_dim=256))
    config["tokenizer_json"] = train_wordpiece(captions, 4000)
    torch.manual_seed(0)
    model = build_aligner_model(config)
    start = time.perf_counter()
    small = F.interpolate(torch.stack(pixels), size=32, mode="bilinear", antialias=True)
    tower = model.encoder.image_tower
    tower.fit(small)
    maps = torch.cat([tower.front(small[i : i + 64]) for i in range(0, len(small), 64)])
    features = text_tower_features(model, captions)
    return model, maps, features, time.perf_counter() - start


def plain_steps(model, steps: int, batch_of, bf16: bool = False) -> StepClock:
    """The plain loop every ssl_modal row shares: AdamW, loss of model(batch_of(step)), clipping, one mark a step."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.1)
    clock = StepClock()
    clock.mark()
    for step in range(steps):
        batch = batch_of(step)
        with precision(bf16):
            loss = model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
    return clock


def run_patch_lit(ctx, steps: int, _run_dir) -> StepClock:
    model, maps, features, _ = ctx["ours_patch_lit"]
    return plain_steps(
        model,
        steps,
        lambda step: model.collate(
            [
                {"image_maps": maps[i], "text_features": features[i], "group": i}
                for i in range(step * BATCH, (step + 1) * BATCH)
            ]
        ),
    )


def run_open_clip(ctx, steps: int, _run_dir, key: str = "open_clip", bf16: bool = False) -> StepClock:
    model, tokenizer, loss_fn = ctx[key]
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.1)
    clock = StepClock()
    clock.mark()
    for step in range(steps):
        start = step * BATCH
        images = torch.stack(ctx["pixels"][start : start + BATCH])
        text = tokenizer(ctx["captions"][start : start + BATCH])
        with precision(bf16):
            image_f, text_f, scale = model(images, text)
            loss = loss_fn(image_f, text_f, scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
    return clock


def run_plain(ctx, steps: int, _run_dir) -> StepClock:
    model = ctx["ours"]
    return plain_steps(
        model, steps, lambda step: model.collate(items(ctx["pixels"], ctx["captions"], step * BATCH, BATCH))
    )


def run_lit(ctx, steps: int, _run_dir, bf16: bool = False) -> StepClock:
    model, features, _ = ctx["ours_lit"]
    return plain_steps(
        model,
        steps,
        lambda step: model.collate(
            [
                {"pixel_values": ctx["pixels"][i], "text_features": features[i], "group": i}
                for i in range(step * BATCH, (step + 1) * BATCH)
            ]
        ),
        bf16,
    )


def run_trainer(ctx, steps: int, run_dir) -> StepClock:
    from ssl_modal.core.trainer import TrainConfig, Trainer

    model = ctx["ours"]
    clock = StepClock()
    collate = model.collate

    def timed_collate(batch_items):  # called once per step, just before the step's forward
        clock.mark()
        return collate(batch_items)

    # One extra step: every timed period then runs from one step's collate to the next (saving model.pt at the
    # end of fit stays out of the timed steps).
    cfg = TrainConfig(
        output_dir=str(run_dir),
        max_steps=steps + 1,
        batch_size=BATCH,
        learning_rate=LR,
        weight_decay=0.1,
        warmup_steps=0,
        log_every=10**9,
        checkpoint_every=10**9,
        monitor_every=10**9,
        progress=False,
        resume=False,
        max_grad_norm=1.0,
    )
    Trainer(cfg).fit(model, items(ctx["pixels"], ctx["captions"], 0, (steps + 1) * BATCH), timed_collate)
    return clock


RUNNERS = {
    "o": run_open_clip,
    "a": run_plain,
    "b": run_trainer,
    "ol": lambda ctx, steps, run_dir: run_open_clip(ctx, steps, run_dir, key="open_clip_lit"),
    "l": run_lit,
    "olb": lambda ctx, steps, run_dir: run_open_clip(ctx, steps, run_dir, key="open_clip_lit", bf16=True),
    "lb": lambda ctx, steps, run_dir: run_lit(ctx, steps, run_dir, bf16=True),
    "lp": run_patch_lit,
}


def count_flops(ctx) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for v in ("o", "a", "ol", "l", "lp"):
        with FlopCounterMode(display=False) as counter:
            RUNNERS[v](ctx, 1, None)
        out[v] = float(counter.get_total_flops())
    out["b"], out["olb"], out["lb"] = out["a"], out["ol"], out["l"]  # autocast changes dtypes, not the FLOPs
    return out


def main(argv=None) -> dict:
    args = parse_round_args(
        __doc__,
        "aligner_throughput",
        full={"steps": 8, "warmup": 2, "repeats": 3},
        quick={"steps": 2, "warmup": 1, "repeats": 1},
        argv=argv,
    )
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    machine, peak_args, peaks = start_run(args.quick)
    total = args.warmup + args.steps
    pixels, captions, source = load_pairs((total + 2) * BATCH)
    ctx = {
        "pixels": pixels,
        "captions": captions,
        "ours": ours(captions),
        "open_clip": open_clip_model(),
        "open_clip_lit": open_clip_lit(),
        "ours_lit": ours_lit(captions),
        "ours_patch_lit": ours_patch_lit(pixels, captions),
    }
    print(f"ssl_modal LiT: caption features of {len(captions)} captions computed once in {ctx['ours_lit'][2]:.1f} s")
    print(f"ssl_modal LiT patch tower: dictionary, maps and caption features once in {ctx['ours_patch_lit'][3]:.1f} s")
    params = {
        "o": sum(p.numel() for p in ctx["open_clip"][0].parameters()),
        "a": sum(p.numel() for p in ctx["ours"].parameters()),
    }
    flops = count_flops(ctx)
    print(
        f"fp32 matmul peak {si(peaks[0]['flops_per_s'], 'FLOP/s')}; data {source}; parameters open_clip "
        f"{params['o']:,}, ours {params['a']:,}; FLOP per step open_clip {si(flops['o'])}, ours {si(flops['a'])}"
    )
    bf16 = cpu_has_native_bf16()
    runners = {v: r for v, r in RUNNERS.items() if bf16 or v not in BF16}
    targets = {k: t for k, t in TARGETS.items() if bf16 or not set(k.split("/")) & BF16}
    if not bf16:
        print("no native bf16 on this CPU: the bf16 rows are skipped")
    samples, foreign = run_rounds(runners, ctx, args, prefix="aligner_bench_")
    peaks.append(matmul_peak(**peak_args))
    peak = max(x["flops_per_s"] for x in peaks)
    results = {}
    for v, secs in samples.items():
        s = summary(secs)["median"]
        results[v] = {
            "label": VARIANTS[v],
            "s_per_step": summary(secs),
            "pairs_per_s": BATCH / s,
            "flops_per_step": flops[v],
            "achieved_flops_per_s": flops[v] / s,
            "achieved_fraction_of_peak": flops[v] / s / peak,
            "other_processes_cpu_fraction": foreign[v],
        }
    ratios = speed_ratios(targets, samples)  # pairs/s ratio: the batch is the same for every variant

    def fastest(*variants: str) -> str:  # the variant with the lowest median s/step among those that ran
        return min((v for v in variants if v in samples), key=lambda v: median(samples[v]))

    best_l, best_ol = fastest("l", "lb"), fastest("ol", "olb")
    value = median(samples[best_ol]) / median(samples[best_l])
    ratios["best l / best ol"] = {"value": value, "target": 2.0, "variants": [best_l, best_ol], "met": value >= 2.0}
    value = median(samples[best_ol]) / median(samples["lp"])  # another image tower: quality in docs/aligner.md
    ratios["lp / best ol"] = {"value": value, "target": 2.0, "variants": ["lp", best_ol], "met": value >= 2.0}
    report = {
        "benchmark": "aligner_throughput",
        "machine": machine,
        "load_average_end": load_average(),
        "config": {
            "batch_size": BATCH,
            "image_size": SIZE,
            "image_tower": "ViT-Ti/16 (12 x 192, 3 heads)",
            "text_tower": "4 x 256, 4 heads",
            "embed_dim": 256,
            "learning_rate": LR,
            "dtype": "float32; bf16 autocast for olb, lb",
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "quick": args.quick,
        },
        "data": source,
        "parameters": params,
        "peak": {"flops_per_s": peak, "runs": peaks},
        "results": results,
        "ratios": ratios,
        "lit_feature_pass_s": ctx["ours_lit"][2],
        "patch_lit_setup_s": ctx["ours_patch_lit"][3],
        "wall_s": time.perf_counter() - started,
    }
    rows = [
        [
            v,
            VARIANTS[v],
            f"{results[v]['s_per_step']['median']:.3f}",
            f"{results[v]['pairs_per_s']:.1f}",
            si(results[v]["achieved_flops_per_s"], "FLOP/s"),
            f"{results[v]['achieved_fraction_of_peak']:.0%}",
        ]
        for v in VARIANTS
        if v in results
    ]
    print(table(["", "variant", "s/step", "pairs/s", "FLOP/s", "of peak"], rows))
    for name, r in ratios.items():
        print(f"{name}: {r['value']:.2f} (target >= {r['target']}, {'met' if r['met'] else 'NOT met'})")
    print(f"wrote {write_json(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
