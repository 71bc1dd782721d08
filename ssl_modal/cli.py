"""`ssl-modal train|embed|eval|features|score|validate|inspect`.

A recipe YAML names its domain at the top (`domain: text`); the domain's `ssl_modal.<domain>.recipe`
module provides `Config` (the recipe dataclass), `train(config)` and `evaluate(config)`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

DOMAINS = ("text", "vectors", "audio", "transactions", "video", "aligner")


def _recipe_module(domain: str, path: str):
    if domain not in DOMAINS:
        from ssl_modal.core.config import ConfigError, _suggest

        raise ConfigError(f"{path}: unknown domain '{domain}'{_suggest(domain, list(DOMAINS))}")
    try:
        return importlib.import_module(f"ssl_modal.{domain}.recipe")
    except ModuleNotFoundError as exc:
        if exc.name == f"ssl_modal.{domain}.recipe" or exc.name == f"ssl_modal.{domain}":
            raise SystemExit(f"error: the '{domain}' domain has no recipe support in this ssl-modal") from None
        raise


def load_recipe(path: str, overrides: list[str], demo: bool = False):
    """(domain recipe module, config dataclass) from a YAML file plus key=value overrides."""
    from ssl_modal.core.config import ConfigError, from_dict, recipe_dict

    domain, data = recipe_dict(path, overrides, demo)
    if domain is None:
        raise ConfigError(f"{path}: missing top-level key 'domain' (one of {', '.join(DOMAINS)})")
    module = _recipe_module(domain, path)
    try:
        return module, from_dict(module.Config, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def cmd_train(args) -> int:
    module, config = load_recipe(args.recipe, args.overrides, args.demo)
    result = module.train(config)
    print(f"trained to step {result.step}; model: {result.checkpoint}")
    return 0


def cmd_eval(args) -> int:
    module, config = load_recipe(args.recipe, args.overrides, args.demo)
    print(module.evaluate(config))
    return 0


def cmd_embed(args) -> int:
    from ssl_modal.core.export import export, load_model
    from ssl_modal.data.readers import read_table

    model = load_model(args.checkpoint)
    frame = read_table(args.data)
    if args.column:
        if args.column not in frame.columns:
            raise SystemExit(f"error: {args.data}: no column '{args.column}'; columns: {list(frame.columns)}")
        data = frame[args.column].tolist()
    else:
        data = frame
    ids = frame[args.id_column].tolist() if args.id_column else None
    path = export(model, data, args.output, ids=ids, batch_size=args.batch_size, normalize=args.normalize)
    print(f"wrote {len(frame)} embeddings to {path}")
    return 0


def cmd_features(args) -> int:
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.features import features

    model = load_model(args.checkpoint)
    if getattr(model, "preprocessor", None) is None:
        raise ValueError(f"{args.checkpoint} is a '{model.spec.kind}' model: features needs a transactions model")
    if args.random_init is not None:  # the baseline row: same architecture and preprocessing, untrained weights
        from ssl_modal.transactions.model import random_init

        model = random_init(model, args.random_init)
    table = features(model, args.table, batch_size=args.batch_size, passes=args.passes, progress=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.output, index=False)
    report = table.attrs.get("report", {})
    print(f"wrote {len(table)} rows ({report.get('rows_scored', len(table))} scored, "
          f"{report.get('rows_not_scored', 0)} not scored) to {args.output}")
    return 0


def cmd_score(args) -> int:
    from ssl_modal.core.export import load_model
    from ssl_modal.transactions.incremental import StateStore, score_new

    model = load_model(args.checkpoint)
    if getattr(model, "preprocessor", None) is None:
        raise ValueError(f"{args.checkpoint} is a '{model.spec.kind}' model: score needs a transactions model")
    path = Path(args.state)
    path = path / "state.sqlite" if path.is_dir() or not path.suffix else path
    path.parent.mkdir(parents=True, exist_ok=True)
    store = StateStore(path, model, create=True)
    table = score_new(model, store, args.table)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.output, index=False)
    report = table.attrs.get("report", {})
    print(f"wrote {len(table)} rows to {args.output}; state {path}: {store.clients()} clients "
          f"({report.get('new_clients', 0)} new, {len(report.get('duplicate_ids', []))} duplicate ids)")
    return 0


def cmd_validate(args) -> int:
    from ssl_modal.data.validate import main_validate

    return main_validate(args.schema, args.file)


def _shorten(value, limit: int = 200):
    """Long strings and lists (vocabularies, tokenizer JSON) as '<N entries>', at any depth."""
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, (list, str)) and len(value) > limit:
        return f"<{len(value)} {'characters' if isinstance(value, str) else 'entries'}>"
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    return value


def cmd_inspect(args) -> int:
    import yaml

    from ssl_modal.core.export import resolve_checkpoint

    ckpt = resolve_checkpoint(Path(args.checkpoint))
    spec = ckpt.get("spec") or {}
    n_params = sum(t.numel() for t in ckpt["model"].values() if hasattr(t, "numel"))
    summary = {
        "kind": spec.get("kind"), "builder": spec.get("builder"),
        "format_version": ckpt["format_version"], "written_by": f"ssl-modal {ckpt['library_version']}",
        "parameters": n_params, "step": (ckpt.get("trainer") or {}).get("step"),
        "has_optimizer_state": "optimizer" in ckpt,
    }
    print(yaml.safe_dump(summary, sort_keys=False).rstrip())
    config = _shorten(spec.get("config") or {})
    print("model config:\n" + yaml.safe_dump(config, sort_keys=False, width=100).rstrip())
    if args.full and ckpt.get("train_config"):
        print("train config:\n" + yaml.safe_dump(ckpt["train_config"], sort_keys=False).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-modal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="pretrain from a recipe YAML")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=100")
    p.add_argument("--demo", action="store_true", help="apply the recipe's demo: section (offline sample)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a recipe's trained model against its baselines")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--demo", action="store_true", help="apply the recipe's demo: section (offline sample)")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("embed", help="export embeddings of a data file with a trained model")
    p.add_argument("checkpoint", help="model.pt, a step checkpoint or a run folder")
    p.add_argument("data", help="CSV/Parquet/JSONL file")
    p.add_argument("-o", "--output", required=True, help=".parquet, .npy, or a folder (datasets.Dataset)")
    p.add_argument("--column", help="pass only this column's values to the model (e.g. text)")
    p.add_argument("--id-column", help="column to carry into the output as 'id'")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.set_defaults(func=cmd_embed)
    p = sub.add_parser("features", help="per-transaction fraud/anomaly features from a transactions model")
    p.add_argument("checkpoint", help="model.pt, a step checkpoint or a run folder")
    p.add_argument("table", help="transactions CSV/Parquet with the columns the model was trained on")
    p.add_argument("-o", "--output", required=True, help="output .parquet (one row per input transaction)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--passes", type=int, default=5, help="interleaved masking patterns (encoder runs per window - 1)")
    p.add_argument("--random-init", type=int, metavar="SEED", help="score with the same model at random init (baseline)")
    p.set_defaults(func=cmd_features)
    p = sub.add_parser("score", help="features of new transactions from a stored per-client state (updates it)")
    p.add_argument("checkpoint", help="model.pt, a step checkpoint or a run folder (causal GRU transactions model)")
    p.add_argument("table", help="new transactions CSV/Parquet (same columns as in training)")
    p.add_argument("--state", required=True, help="SQLite state file, or a folder for state.sqlite (created if absent)")
    p.add_argument("-o", "--output", required=True, help="output .parquet (one row per new transaction)")
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("validate", help="check a data file against a schema in data_schemas/")
    p.add_argument("schema", help="schema name (e.g. text_corpus) or path")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("inspect", help="summarise a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--full", action="store_true", help="also print the training config")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ssl_modal.core.script import USER_ERRORS, report_user_error

    try:
        return args.func(args)
    except USER_ERRORS as exc:
        return report_user_error(exc)


if __name__ == "__main__":
    sys.exit(main())
