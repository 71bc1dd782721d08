"""The transactions commands of `ssl-modal`: `features`, `score` (incremental, from a client state) and
`preprocess` (window shards with pandas or Spark). Registered by `ssl_modal.cli.build_parser`."""

from __future__ import annotations

from pathlib import Path


def add_transactions_commands(sub) -> None:
    """Add `features`, `score` and `preprocess` to the `ssl-modal` subparsers."""
    p = sub.add_parser("features", help="per-transaction fraud/anomaly features from a transactions model")
    p.add_argument("checkpoint", help="model.pt, a step checkpoint or a run folder")
    p.add_argument("table", help="transactions CSV/Parquet with the columns the model was trained on")
    p.add_argument("-o", "--output", required=True, help="output .parquet or .csv (one row per input transaction)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--passes", type=int, default=5, help="interleaved masking patterns (encoder runs per window - 1)")
    p.add_argument(
        "--random-init", type=int, metavar="SEED", help="score with the same model at random init (baseline)"
    )
    p.add_argument("--engine", choices=["pandas", "spark"], default="pandas", help="spark: table may be a lake folder")
    p.add_argument("--kind", choices=["features", "clients"], default="features", help="spark: rows or clients")
    p.add_argument("--master", default="local[2]", help="Spark master URL (engine spark)")
    p.add_argument("--partitions", type=int, default=8, help="Spark: client buckets")
    p.add_argument("--driver-memory", default="2g", help="Spark: spark.driver.memory")
    p.set_defaults(func=cmd_features)
    p = sub.add_parser("score", help="features of new transactions from a stored per-client state (updates it)")
    p.add_argument("checkpoint", help="model.pt, a step checkpoint or a run folder (causal GRU transactions model)")
    p.add_argument("table", help="new transactions CSV/Parquet (same columns as in training)")
    p.add_argument(
        "--state",
        required=True,
        help="SQLite state file, or a folder for state.sqlite or the shard files (created if absent)",
    )
    p.add_argument("-o", "--output", required=True, help="output .parquet (one row per new transaction)")
    p.add_argument(
        "--shards", type=int, help="a ShardedStore of N shard files in the --state folder (N processes); 1: one file"
    )
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("preprocess", help="transactions: write per-client window shards (pandas or Spark)")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. data.table=lake/")
    p.add_argument("-o", "--output", required=True, help="output folder (windows/*.parquet, preprocessor.json)")
    p.add_argument("--engine", choices=["pandas", "spark"], default="pandas")
    p.add_argument("--master", default="local[2]", help="Spark master URL (engine spark)")
    p.add_argument("--partitions", type=int, default=8, help="client buckets = output shards")
    p.add_argument("--approx", action="store_true", help="Spark: amount bin edges by percentile_approx")
    p.add_argument("--driver-memory", default="2g", help="Spark: spark.driver.memory")
    p.add_argument("--demo", action="store_true", help="apply the recipe's demo: section (offline sample)")
    p.set_defaults(func=cmd_preprocess)


def cmd_features(args) -> int:
    import os

    from ssl_modal.core.export import load_model
    from ssl_modal.core.writers import check_output_path
    from ssl_modal.transactions.features import features

    spark = getattr(args, "engine", "pandas") == "spark"
    suffix = Path(args.output).suffix.lower()
    if spark:  # Spark writes a folder of Parquet part files
        if Path(args.output).is_file():
            raise ValueError(f"{args.output}: is a file; --engine spark writes a folder of Parquet part files")
    elif suffix not in (".parquet", ".csv"):
        found = Path(args.output).suffix
        raise ValueError(f"{args.output}: unknown output suffix '{found}'; supported: .parquet, .csv")
    else:
        check_output_path(args.output, suffix[1:], create=False)  # before any work
    model = load_model(args.checkpoint)
    if getattr(model, "preprocessor", None) is None:
        raise ValueError(f"{args.checkpoint} is a '{model.spec.kind}' model: features needs a transactions model")
    if args.random_init is not None:  # the baseline row: same architecture and preprocessing, untrained weights
        if spark:
            raise ValueError("--random-init works with --engine pandas only (Spark scores a saved checkpoint)")
        from ssl_modal.transactions.model import random_init

        model = random_init(model, args.random_init)
    if spark:  # a folder of Parquet part files, the table never in one process
        from ssl_modal.transactions.spark import read_spark_table, spark_session
        from ssl_modal.transactions.spark_score import write_scores

        spark = spark_session(args.master, args.driver_memory)
        df = read_spark_table(spark, args.table)
        write_scores(
            args.checkpoint,
            df,
            args.output,
            kind=args.kind,
            partitions=args.partitions,
            batch_size=args.batch_size,
            passes=args.passes,
        )
        print(f"wrote {args.kind} of {args.table} to {args.output} (Spark, {args.partitions} client buckets)")
        return 0
    table = features(model, args.table, batch_size=args.batch_size, passes=args.passes, progress=True)
    out = check_output_path(args.output, suffix[1:])
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        table.to_parquet(tmp, index=False) if suffix == ".parquet" else table.to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    report = table.attrs.get("report", {})
    print(
        f"wrote {len(table)} rows ({report.get('rows_scored', len(table))} scored, "
        f"{report.get('rows_not_scored', 0)} not scored) to {args.output}"
    )
    return 0


def cmd_score(args) -> int:
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.incremental import ShardedStore, StateStore, score_new

    model = load_model(args.checkpoint)
    if getattr(model, "preprocessor", None) is None:
        raise ValueError(f"{args.checkpoint} is a '{model.spec.kind}' model: score needs a transactions model")
    path = Path(args.state)
    sharded = (args.shards or 1) > 1 or (args.shards is None and any(path.glob("shard-*-of-*.sqlite")))
    if sharded:  # a folder of shard files (an existing one is opened with its own shard count)
        store = ShardedStore(path, model, args.shards, create=True)
    else:
        path = path / "state.sqlite" if path.is_dir() or not path.suffix else path
        path.parent.mkdir(parents=True, exist_ok=True)
        store = StateStore(path, model, create=True)
    table = score_new(model, store, args.table)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.output, index=False)
    report = table.attrs.get("report", {})
    print(
        f"wrote {len(table)} rows to {args.output}; state {path}: {store.clients()} clients "
        f"({report.get('new_clients', 0)} new, {len(report.get('duplicate_ids', []))} duplicate ids)"
        + (f", {store.shards} shards ({report['already_applied']} rows already applied)" if sharded else "")
    )
    store.close()
    return 0


def cmd_preprocess(args) -> int:
    from ssl_modal.cli import load_recipe
    from ssl_modal.transactions.shards import preprocess_recipe

    module, config = load_recipe(args.recipe, args.overrides, args.demo)
    if module.__name__ != "ssl_modal.transactions.recipe":
        raise SystemExit(f"error: {args.recipe}: preprocess supports transactions recipes only")
    report = preprocess_recipe(
        config,
        args.output,
        engine=args.engine,
        master=args.master,
        partitions=args.partitions,
        approx=args.approx,
        driver_memory=args.driver_memory,
    )
    print(
        f"wrote {report['windows']} windows of {report['clients']} clients ({report['rows_out']} of "
        f"{report['rows_in']} rows) to {args.output} in {report['seconds']} s; "
        f"train with: ssl-modal train {args.recipe} data.shards={args.output}"
    )
    return 0
