"""Transactions throughput: CoLES training events/s, embedding inference events/s, feature generation rows/s.

    python bench/transactions_train.py            # ~4 min on 2 idle CPU cores
    python bench/transactions_train.py --quick    # ~1 min smoke run (JSON to the temp dir)

Data: the Sparkov sample (../shared/data/transactions/sparkov/transactions.parquet, 247k real simulator rows),
preprocessed once into windows of up to 256 events. Encoder: field embeddings + GRU hidden 256 (the size of
the pytorch-lifestream 0.7.0 reference: CoLES, GRU 256, batch 64, 2 threads: 5.9k source events/s training,
54k events/s inference, measured on this machine kind; the reference is quoted, not re-run here -- ptls is
not installed). CoLES objective: 5 random slices of 10-80 % of each window (<= 200 events).
Variants, alternated in rounds:
  train/a  ssl_modal.Trainer over the SSLModel (what a recipe does)
  train/b  plain PyTorch loop over the same SSLModel and the same pre-collated batches (in-run reference)
  infer/a  ssl_modal.encode (collate + forward, pooled embeddings)
  infer/b  plain no-grad encoder loop over pre-collated batches
  features ssl_modal.transactions.features on 50,000 raw rows (preprocessing, a clean pass, exact per-event
           surprises by one GRU cell step per event, order / gap heads)
"source events" are the real events of the windows a step reads (the slices are drawn from them).
Writes bench/results/transactions_train.json.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    RESULTS,
    ROOT,
    ForeignCPU,
    StepClock,
    load_average,
    machine_info,
    matmul_peak,
    summary,
    table,
    write_json,
)

SPARKOV = ROOT.parent / "shared" / "data" / "transactions" / "sparkov" / "transactions.parquet"
COLUMNS = {
    "client_id": "client_id",
    "event_time": "trans_date_trans_time",
    "amount": "amt",
    "mcc": "category",
    "transaction_id": "trans_num",
}
HIDDEN, BATCH, MAX_LEN, SEED = 256, 64, 256, 0
REFERENCE = {
    "ptls_coles_train_events_per_s": 5900.0,
    "ptls_coles_infer_events_per_s": 54000.0,
    "target_infer_events_per_s": 100000.0,
    "target_features_rows_per_s": 20000.0,
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare(rows: int | None):
    import pandas as pd

    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.preprocess import PreprocessConfig, TransactionPreprocessor

    frame = pd.read_parquet(SPARKOV)
    frame = frame.iloc[:rows] if rows else frame
    pre = TransactionPreprocessor(PreprocessConfig(columns=ColumnMapping(**COLUMNS), max_length=MAX_LEN))
    t0 = time.perf_counter()
    sequences = pre.fit_transform(frame)
    return frame, pre, sequences, time.perf_counter() - t0


def build(pre, objectives: dict):
    from ssl_modal.core.config import from_dict
    from ssl_modal.transactions.config import EncoderConfig, ObjectivesConfig
    from ssl_modal.transactions.model import build_transactions_model, transactions_model_config

    torch.manual_seed(SEED)
    enc = EncoderConfig(hidden=HIDDEN, mcc_dim=16, cat_dim=8, num_dim=16)
    return build_transactions_model(transactions_model_config(pre, enc, from_dict(ObjectivesConfig, objectives)))


COLES = {
    "masked": {"weight": 0},
    "order": {"weight": 0},
    "contrastive": {"weight": 1, "views": 5, "min_fraction": 0.1, "max_fraction": 0.8, "max_events": 200},
}


def run_trainer(pre, sequences, steps: int, workdir: Path):
    from ssl_modal import TrainConfig, Trainer

    model = build(pre, COLES)
    clock, events = StepClock(), []

    def collate(items):
        clock.mark()  # call j starts step j, right after step j-1 ended
        batch = model.collate(items)
        events.append(int(batch["mask"].sum()))
        return batch

    cfg = TrainConfig(
        output_dir=str(workdir / "trainer"),
        max_steps=steps + 1,
        batch_size=BATCH,
        learning_rate=1e-3,
        warmup_steps=1,
        seed=SEED,
        log_every=10,
        checkpoint_every=10**9,
        progress=False,
        tensorboard=False,
        device="cpu",
        resume=False,
        monitor_every=0,
    )
    Trainer(cfg).fit(model, sequences, collate)
    return clock, events[:steps]


def run_plain(pre, sequences, steps: int, batches: list[dict]):
    model = build(pre, COLES)
    model.set_generator(torch.Generator().manual_seed(SEED))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    clock = StepClock()
    clock.mark()
    for step in range(steps):
        loss = model(batches[step % len(batches)])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
    return clock, [int(batches[s % len(batches)]["mask"].sum()) for s in range(steps)]


def events_per_s(clock: StepClock, events: list[int], warmup: int) -> float:
    n = len(events) - warmup
    return sum(events[warmup:]) / clock.seconds(warmup, n)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 4, 1, 1
    torch.set_num_threads(args.threads)
    machine = machine_info()
    peak = matmul_peak((1024,), repeats=4)
    frame, pre, sequences, prep_s = prepare(60_000 if args.quick else None)
    info = {
        "rows": len(frame),
        "windows": len(sequences),
        "preprocess_s": prep_s,
        "peak_rss_mb_after_prep": peak_rss_mb(),
    }
    from ssl_modal.core.distributed import DistInfo, ShardedEpochSampler

    model = build(pre, COLES)
    # the windows ssl_modal.Trainer reads in epoch 0 (seed 0), in its order: both variants see the same batches
    order = list(ShardedEpochSampler(len(sequences), BATCH, 0, SEED, DistInfo()))
    total = args.steps + args.warmup
    if total > len(order) // BATCH:
        raise SystemExit(f"--steps + --warmup = {total} exceeds the {len(order) // BATCH} batches of one epoch")
    batches = [model.collate([sequences[int(j)] for j in order[i * BATCH : (i + 1) * BATCH]]) for i in range(total)]
    train_a, train_b, foreign = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, store in (("a", train_a), ("b", train_b)):
                with ForeignCPU() as fc:
                    if name == "a":
                        clock, ev = run_trainer(pre, sequences, args.steps + args.warmup, Path(tmp) / str(r))
                    else:
                        clock, ev = run_plain(pre, sequences, args.steps + args.warmup, batches)
                store.append(events_per_s(clock, ev, args.warmup))
                foreign.append(fc.fraction)
    info["peak_rss_mb_after_training"] = peak_rss_mb()

    from ssl_modal.core.export import encode
    from ssl_modal.transactions.features import features

    infer_a, infer_b = [], []
    model.eval()
    n_infer = min(len(sequences), 640)
    subset = [sequences[i] for i in range(n_infer)]
    pre_batches = [model.collate(subset[i : i + 128]) for i in range(0, n_infer, 128)]
    events = sum(int(b["mask"].sum()) for b in pre_batches)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        encode(model, subset, batch_size=128)
        infer_a.append(events / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in pre_batches:
                _ = model.encoder(b).pooled
        infer_b.append(events / (time.perf_counter() - t0))
    info["peak_rss_mb_after_inference"] = peak_rss_mb()

    feat_model = build(pre, {})  # all three objectives: surprise, order and gap heads
    rows = frame.iloc[: 20_000 if args.quick else 50_000]
    feat = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = features(feat_model, rows, batch_size=64, passes=5, progress=False)
        feat.append(len(rows) / (time.perf_counter() - t0))
        assert len(out) == len(rows)
    info["peak_rss_mb_after_features"] = peak_rss_mb()

    result = {
        "machine": machine,
        "matmul_peak": peak,
        "config": {
            "hidden": HIDDEN,
            "batch": BATCH,
            "max_len": MAX_LEN,
            "coles": COLES["contrastive"],
            "threads": args.threads,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "data": info,
        "reference": REFERENCE,
        "train_events_per_s": {"trainer": summary(train_a), "plain_loop": summary(train_b)},
        "train_ratio_trainer_vs_plain": summary([a / b for a, b in zip(train_a, train_b, strict=True)]),
        "train_vs_ptls_reference": summary(train_a)["median"] / REFERENCE["ptls_coles_train_events_per_s"],
        "infer_events_per_s": {"encode": summary(infer_a), "plain_loop": summary(infer_b)},
        "features_rows_per_s": summary(feat),
        "foreign_cpu_fraction": foreign,
        "load_average_end": load_average(),
    }
    out_path = (Path(tempfile.gettempdir()) / "ssl_modal_bench" if args.quick else RESULTS) / "transactions_train.json"
    write_json(out_path, result)
    rows_out = [
        [
            "CoLES training, ssl_modal.Trainer",
            f"{result['train_events_per_s']['trainer']['median']:,.0f} ev/s",
            f"ptls 5.9k: x{result['train_vs_ptls_reference']:.2f}",
        ],
        [
            "CoLES training, plain loop (in-run ref)",
            f"{result['train_events_per_s']['plain_loop']['median']:,.0f} ev/s",
            f"Trainer/plain x{result['train_ratio_trainer_vs_plain']['median']:.2f}",
        ],
        ["inference, encode()", f"{result['infer_events_per_s']['encode']['median']:,.0f} ev/s", "target >= 100k"],
        ["inference, plain no-grad loop", f"{result['infer_events_per_s']['plain_loop']['median']:,.0f} ev/s", ""],
        ["features(), raw rows -> table", f"{result['features_rows_per_s']['median']:,.0f} rows/s", "target >= 20k"],
        ["peak RSS", f"{info['peak_rss_mb_after_features']:,.0f} MB", ""],
    ]
    print(table(["what", "median", "vs"], rows_out))
    print(f"foreign CPU share per training sample: {[round(f, 2) if f is not None else None for f in foreign]}")
    print(f"wrote {out_path}")
    return result


if __name__ == "__main__":
    main()
