"""Incremental scoring latency: `score_new` from the SQLite client state vs recomputing a client's history.

    OMP_NUM_THREADS=1 .venv/bin/python bench/transactions_incremental.py \
        [--model RUN] [--clients N] [--new K] [--out NAME]

Model: the Sparkov recipe's architecture (GRU 128, history objective; a trained run folder with --model, else the
recipe's model at random init: latency does not depend on the weights). Data: the shared Sparkov table; the last
`--new` events of `--clients` clients are held out as "new", the rest builds the state (nightly batch).
Measured, one thread: nightly build (events/s); single-event scoring (one `score_new` call per event, the new
events in time order: encoding, state read, GRU step, features, atomic SQLite commit; median and p99 ms, wall
clock and the thread's CPU time, which a busy machine inflates less); 1,000-event batches of the next new
events in time order, so drawn across the clients (events/s, median and minimum over batches; the same
batches on three copies of the state: one process, a 2-shard `ShardedStore` (built by its own nightly run,
helper started before the timing; shard 1 scored end to end in a helper process), and one process without the
row cache); single events (records) on the sharded store too; the
reference: `features()` on the client's whole history for each new event (median and p99 ms); state size per
client (the state blob, and the SQLite file after a checkpoint, per client).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, load_average  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="trained transactions run folder (default: the recipe's model at random init)")
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--new", type=int, default=40, help="held-out events per client")
    p.add_argument("--single", type=int, default=200, help="single-event calls to time, per input kind")
    p.add_argument("--out", default="transactions_incremental", help="results file name (bench/results/NAME.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from ssl_modal.core.config import load_config
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.config import TransactionsConfig
    from ssl_modal.transactions.features import features
    from ssl_modal.transactions.incremental import ShardedStore, StateStore, score_new
    from ssl_modal.transactions.model import build_transactions_model, transactions_model_config
    from ssl_modal.transactions.preprocess import TransactionPreprocessor
    from ssl_modal.transactions.recipe import preprocess_config, read_frame

    cfg = load_config(TransactionsConfig, Path(__file__).resolve().parents[1] / "recipes/transactions_sparkov.yaml")
    frame = read_frame(cfg)
    keep = frame["client_id"].drop_duplicates().iloc[: args.clients]
    frame = frame[frame["client_id"].isin(keep)].copy()
    frame["_t"] = pd.to_datetime(frame["trans_date_trans_time"])
    frame = frame.sort_values(["client_id", "_t"], kind="stable").drop(columns="_t").reset_index(drop=True)
    is_new = frame.groupby("client_id").cumcount(ascending=False) < args.new
    old, new = frame[~is_new], frame[is_new]
    if args.model:
        model = load_model(args.model)
    else:
        pre = TransactionPreprocessor(preprocess_config(cfg)).fit(old)
        torch.manual_seed(0)
        model = build_transactions_model(transactions_model_config(pre, cfg.encoder, cfg.objectives)).eval()
    new = new.assign(_t=pd.to_datetime(new["trans_date_trans_time"])).sort_values("_t", kind="stable")
    new = new.drop(columns="_t")
    out = {
        "load_average_start": load_average(),
        "clients": args.clients,
        "history_events": len(old),
        "new_events": len(new),
    }
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as tmp2:
        store = StateStore.create(Path(tmp) / "state.sqlite", model)
        t = time.perf_counter()
        score_new(model, store, old)
        out["nightly_events_per_s"] = round(len(old) / (time.perf_counter() - t))
        sharded = ShardedStore.create(Path(tmp2) / "sharded", model, shards=2)
        t = time.perf_counter()
        sharded.start(model)
        out["shards2_start_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        score_new(model, sharded, old)
        out["nightly_shards2_events_per_s"] = round(len(old) / (time.perf_counter() - t))
        # one call per event, in time order: first a record (a dict with JSON values: ISO time text, numbers,
        # text), then a one-row DataFrame
        single = new.iloc[: 2 * args.single]
        records = json.loads(single.iloc[: args.single].to_json(orient="records", date_format="iso"))
        frames = [single.iloc[i : i + 1] for i in range(args.single, len(single))]
        for kind, calls, st in (
            ("record", records, store),
            ("frame", frames, store),
            ("shards2_record", records, sharded),
        ):
            lat, cpu = [], []
            for row in calls:
                t, c = time.perf_counter(), time.thread_time()
                score_new(model, st, row)
                lat.append((time.perf_counter() - t) * 1000)
                cpu.append((time.thread_time() - c) * 1000)
            out[f"single_{kind}_ms_median"] = round(float(np.median(lat)), 2)
            out[f"single_{kind}_ms_p99"] = round(float(np.percentile(lat, 99)), 2)
            out[f"single_{kind}_cpu_ms_median"] = round(float(np.median(cpu)), 2)
            out[f"single_{kind}_cpu_ms_p99"] = round(float(np.percentile(cpu, 99)), 2)
        rest = new.iloc[2 * args.single :]
        # the same batches on three states: one file (the store above), two shards, one file without row cache
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(Path(tmp) / "state.sqlite", Path(tmp2) / "cold.sqlite")
        stores = {  # "threads1": one process (the name kept for comparison with earlier result files)
            "threads1": store,
            "shards2": sharded,
            "threads1_nocache": StateStore.open(Path(tmp2) / "cold.sqlite", model, cache_clients=0),
        }
        rates, total, spans = {k: [] for k in stores}, dict.fromkeys(stores, 0.0), []
        for s in range(0, len(rest) - 999, 1000):
            batch = rest.iloc[s : s + 1000]
            spans.append(batch["client_id"].nunique())
            for name, st in stores.items():
                t = time.perf_counter()
                score_new(model, st, batch)
                total[name] += time.perf_counter() - t
                rates[name].append(1000 / (time.perf_counter() - t))
        for name, r in rates.items():
            key = f"batch_1000_{name}_events_per_s"
            out[key] = round(float(np.median(r))) if r else None
            out[f"{key}_min"] = round(float(np.min(r))) if r else None
            out[f"{key}_overall"] = round(1000 * len(r) / total[name]) if r else None
        out["batch_1000_clients_per_batch"] = spans
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the database file alone, the WAL emptied into it
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        out["state_bytes_per_client"] = round(size / store.clients())
        out["state_blob_bytes_per_client"] = int(4 * store.width)
        sharded.close()
    ref = []
    for i in range(min(50, len(single))):
        row = single.iloc[i]
        hist = frame[(frame["client_id"] == row["client_id"])]
        hist = hist[pd.to_datetime(hist["trans_date_trans_time"]) <= pd.to_datetime(row["trans_date_trans_time"])]
        t = time.perf_counter()
        features(model, hist, progress=False)
        ref.append((time.perf_counter() - t) * 1000)
    out["recompute_ms_median"] = round(float(np.median(ref)), 2)
    out["recompute_ms_p99"] = round(float(np.percentile(ref, 99)), 2)
    out["load_average_end"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=1) + "\n")
    for k, v in out.items():
        print(f"{k:32s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
