"""Scale-out: single-machine pandas preprocessing vs Spark local[2], and streaming training, at 10^6 / 10^7 rows.

    flock /tmp/ssl_heavy.lock .venv/bin/python bench/transactions_scale.py --rows 1m --stage pandas
    ... --stage spark | --stage stream      (one stage and size per call; results merge into the JSON)

Tables (temp folder, never committed): 1m = ../shared/tools/sparkov/generate.sh 1200 12 2025 (seed != 4444,
~1.05M rows); 10m = that table replicated 10 times with shifted client ids (+10^6 k), shifted times (+400 days k)
and suffixed transaction ids, as 10 Parquet files. Each stage runs in a child process; the parent samples the
RSS of the child (pandas / Spark driver / trainer), of its JVM and of the Spark Python workers every 0.2 s.
Stages: pandas = read + fit + transform + write shards; spark = session + fit (exact) + transform/write;
stream = `train_from_shards` for --steps steps on the spark stage's shards (RSS must not grow with rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, load_average  # noqa: E402

TMP = Path(os.environ.get("SCALE_TMP", "/tmp/ssl_scale"))
GENERATOR = ROOT.parent / "shared" / "tools" / "sparkov" / "generate.sh"
COLUMNS = {
    "client_id": "client_id",
    "event_time": "trans_date_trans_time",
    "amount": "amt",
    "mcc": "category",
    "transaction_id": "trans_num",
}
READ = list(COLUMNS.values())
SIZES = {"1m": 1, "10m": 10}


def ensure_tables(size: str) -> Path:
    one = Path(os.environ.get("SPARKOV_1M", TMP / "sparkov_1m" / "transactions.parquet"))
    if not one.exists():
        subprocess.run(["bash", str(GENERATOR), "1200", "12", "2025", str(one.parent), "01-01-2019"], check=True)
    if size == "1m":
        return one
    folder = TMP / "sparkov_10m"
    if len(list(folder.glob("*.parquet"))) == SIZES[size]:
        return folder
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    base = pq.read_table(one, columns=READ)
    for k in range(SIZES[size]):
        t = base.set_column(0, "client_id", pc.add(base.column("client_id").cast(pa.int64()), 1_000_000 * k))
        shift = pa.scalar(400 * 86400 * 1_000_000 * k, pa.duration("us"))
        t = t.set_column(1, "trans_date_trans_time", pc.add(t.column("trans_date_trans_time"), shift))
        t = t.set_column(
            4, "trans_num", pc.binary_join_element_wise(t.column("trans_num").cast(pa.string()), pa.scalar(f"{k}"), "-")
        )
        pq.write_table(t, folder / f"part-{k:02d}.parquet", compression="zstd")
    return folder


def config(max_length: int = 256):
    from ssl_modal.transactions import ColumnMapping, PreprocessConfig

    return PreprocessConfig(columns=ColumnMapping(**COLUMNS), amount_bins=32, max_length=max_length)


def child(stage: str, size: str, partitions: int, steps: int, approx: bool = False) -> dict:
    from ssl_modal.transactions.preprocess import TransactionPreprocessor

    table, shards = ensure_tables(size), TMP / f"shards_{size}_{stage}"
    if stage == "stream":  # the Spark stage's shards, else the pandas stage's
        shards = next(
            (
                p
                for p in (TMP / f"shards_{size}_spark", TMP / f"shards_{size}_pandas")
                if (p / "preprocessor.json").exists()
            ),
            None,
        )
        if shards is None:
            raise SystemExit(f"no shards for {size}: run --stage spark or --stage pandas first")
    times: dict = {}
    t0 = time.perf_counter()
    if stage == "pandas":
        import pandas as pd

        from ssl_modal.transactions.shards import write_shards_pandas

        frame = pd.read_parquet(table, columns=READ)
        times["read"] = time.perf_counter() - t0
        pre = TransactionPreprocessor(config())
        t1 = time.perf_counter()
        pre.fit(frame)
        times["fit"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        report = write_shards_pandas(pre, frame, shards, partitions=partitions, fit=False)
        times["transform_write"] = time.perf_counter() - t1
    elif stage == "spark":
        from ssl_modal.transactions.spark import fit_spark, read_spark_table, spark_session, transform_spark

        spark = spark_session("local[2]", "2g", {"spark.sql.shuffle.partitions": partitions})
        times["session"] = time.perf_counter() - t0
        df = read_spark_table(spark, table).select(*READ)
        pre = TransactionPreprocessor(config())
        t1 = time.perf_counter()
        fit_spark(pre, df, source=str(table))
        times["fit"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        report = transform_spark(pre, df, shards, partitions=partitions, source=str(table))
        times["transform_write"] = time.perf_counter() - t1
        if approx:  # percentile_approx edges against the exact ones (signed-log1p units)
            import numpy as np

            t1 = time.perf_counter()
            rough = fit_spark(TransactionPreprocessor(config()), df, approx=True, source=str(table))
            times["fit_approx"] = time.perf_counter() - t1
            a, b = np.array(rough.state_dict()["amount_edges"]), np.array(pre.state_dict()["amount_edges"])
            report["approx_edges"] = {
                "n_exact": len(b),
                "n_approx": len(a),
                "max_abs_diff": float(np.max(np.abs(a - b))) if len(a) == len(b) else None,
            }
        spark.stop()
    else:
        import torch

        from ssl_modal.core.config import from_dict
        from ssl_modal.transactions.config import TransactionsConfig
        from ssl_modal.transactions.shards import train_from_shards

        torch.set_num_threads(1)
        out = TMP / f"run_{size}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        cfg = from_dict(
            TransactionsConfig,
            {
                "data": {"shards": str(shards)},
                "threads": 1,
                "encoder": {"hidden": 64, "mcc_dim": 16, "cat_dim": 8, "num_dim": 8},
                "train": {
                    "output_dir": str(out),
                    "max_steps": steps,
                    "batch_size": 32,
                    "log_every": 10,
                    "checkpoint_every": steps,
                    "progress": False,
                    "tensorboard": False,
                    "monitor_every": 0,
                },
            },
        )
        result = train_from_shards(cfg)
        times["train"] = time.perf_counter() - t0
        report = {
            "rows_in": None,
            "steps": result.step,
            "windows": None,
            "shards": str(shards),
            "examples_per_s": [r["examples_per_s"] for r in result.history if "examples_per_s" in r],
        }
    times["total"] = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "times_s": {k: round(v, 2) for k, v in times.items()},
        "driver_ru_maxrss_mb": round(peak),
        "rows": report.get("rows_in"),
        "windows": report.get("windows"),
        "report": {
            k: report[k]
            for k in ("clients", "events", "steps", "examples_per_s", "shards", "approx_edges")
            if k in report
        },
    }


def _tree_rss(root: int) -> dict:
    """RSS (MB) of the root, of its java descendants and of its other python descendants (Spark workers)."""
    children: dict = {}
    info = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        ppid = int(fields["PPid"].strip())
        rss = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
        children.setdefault(ppid, []).append(int(pid))
        info[int(pid)] = (cmd, rss)
    out = {"driver": info.get(root, ("", 0.0))[1], "jvm": 0.0, "workers": 0.0, "workers_max_one": 0.0}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        cmd, rss = info.get(pid, ("", 0.0))
        if "java" in cmd:
            out["jvm"] += rss
        elif "python" in cmd:
            out["workers"] += rss
            out["workers_max_one"] = max(out["workers_max_one"], rss)
        stack += children.get(pid, [])
    return out


def measure(stage: str, size: str, partitions: int, steps: int, approx: bool) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--stage",
        stage,
        "--rows",
        size,
        "--partitions",
        str(partitions),
        "--steps",
        str(steps),
    ] + (["--approx"] if approx else [])
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    peaks = {"driver": 0.0, "jvm": 0.0, "workers": 0.0, "workers_max_one": 0.0}
    err: list = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        for k, v in _tree_rss(proc.pid).items():
            peaks[k] = max(peaks[k], v)
        time.sleep(0.2)
    out = proc.stdout.read()
    reader.join()
    if proc.returncode:
        raise SystemExit(f"{stage} {size} failed:\n{''.join(err)[-4000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = {k: round(v) for k, v in peaks.items()}
    return result


def markdown(path: Path) -> str:
    """The results JSON as the docs/benchmarks.md table."""
    data = json.loads(path.read_text())
    lines = [
        "| stage | rows | total s | rows/s | time per stage (s) | peak RSS MB: driver / JVM / Python workers "
        "(sum; largest one) | load before -> after |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(data, key=lambda k: (k.split("_")[1], k)):
        r = data[key]
        stage, size = key.split("_")
        stages = ", ".join(f"{k} {v}" for k, v in r["times_s"].items() if k != "total")
        rss = r["peak_rss_mb"]
        mem = f"{rss['driver']} / {rss['jvm']} / {rss['workers']}; {rss['workers_max_one']}"
        rows = f"{r['rows']:,}" if r.get("rows") else f"{size} ({r['report'].get('steps')} steps)"
        rate = f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "-"
        load = f"{r['load_before'][0]} -> {r['load_after'][0]}"
        lines.append(f"| {stage} | {rows} | {r['times_s']['total']} | {rate} | {stages} | {mem} | {load} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", choices=list(SIZES), default="1m")
    ap.add_argument("--stage", choices=["pandas", "spark", "stream"], default="pandas")
    ap.add_argument("--partitions", type=int, default=0, help="client buckets / shards (default 4 per 10^6 rows)")
    ap.add_argument("--steps", type=int, default=60, help="stream: training steps")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "transactions_scale.json")
    ap.add_argument("--approx", action="store_true", help="spark: also fit with percentile_approx, compare edges")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--markdown", action="store_true", help="print the results JSON as a markdown table")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(args.out))
        return
    partitions = args.partitions or 4 * SIZES[args.rows]
    if args.child:
        print(json.dumps(child(args.stage, args.rows, partitions, args.steps, args.approx)))
        return
    ensure_tables(args.rows)
    load_before = load_average()
    result = measure(args.stage, args.rows, partitions, args.steps, args.approx)
    result.update(load_before=load_before, load_after=load_average(), partitions=partitions)
    if result.get("rows"):
        result["rows_per_s"] = round(result["rows"] / result["times_s"]["total"])
    print(json.dumps(result, indent=1))
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data[f"{args.stage}_{args.rows}"] = result
    args.out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
