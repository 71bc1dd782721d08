"""`ssl-modal train|embed|eval|features|score|preprocess|validate|inspect`.

The transactions commands (features, score, preprocess) live in `ssl_modal.cli_transactions`.

A recipe YAML names its domain at the top (`domain: text`); the domain's `ssl_modal.<domain>.recipe`
module provides `Config` (the recipe dataclass), `train(config)` and `evaluate(config)`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from ssl_modal.cli_transactions import add_transactions_commands

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
    table = module.evaluate(config)
    print(table)
    if hasattr(table, "to_json"):
        path = table.to_json(Path(config.train.output_dir) / "probe.json")
        print(f"wrote {path}")
    return 0


def _domain_of(model) -> str:
    """The domain package of a model's builder ('ssl_modal.audio.model:build' -> 'audio')."""
    parts = model.spec.builder.split(":")[0].split(".") if getattr(model, "spec", None) else []
    return parts[1] if len(parts) > 2 and parts[0] == "ssl_modal" else ""


def embed_input(model, args):
    """The domain's `embed_input` (ssl_modal.<domain>.embed) or the plain table reader (vectors, custom)."""
    from ssl_modal.data.embed_input import EmbedInput, check_on_error, id_columns, require_column
    from ssl_modal.data.readers import read_table

    domain = _domain_of(model)
    try:
        module = importlib.import_module(f"ssl_modal.{domain}.embed") if domain else None
    except ModuleNotFoundError as exc:
        if exc.name != f"ssl_modal.{domain}.embed":
            raise
        module = None
    if module is not None:
        return module.embed_input(
            model, args.data, column=args.column, id_column=args.id_column, on_error=args.on_error
        )
    check_on_error(args.on_error)
    frame = read_table(args.data)
    if args.column:
        require_column(frame, args.column, args.data, "--column")
    data = frame[args.column].tolist() if args.column else frame
    return EmbedInput(data=data, ids=id_columns(frame, args.id_column, args.data))


def cmd_embed(args) -> int:
    from ssl_modal.core.export import export, load_model
    from ssl_modal.core.writers import check_output_path, output_format, write_embeddings

    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, found {args.batch_size}")
    fmt = output_format(args.output, args.format)
    check_output_path(args.output, fmt, create=False)  # before any work
    model = load_model(args.checkpoint)
    inp = embed_input(model, args)
    if inp.note:
        print(inp.note)
    if inp.embeddings is not None:
        path = write_embeddings(args.output, inp.embeddings, inp.ids, fmt)
        n = len(inp.embeddings)
    else:
        path = export(
            model, inp.data, args.output, ids=inp.ids, batch_size=args.batch_size, normalize=args.normalize, format=fmt
        )
        n = len(inp.data)
    print(f"wrote {n} embeddings to {path}")
    return 0


def cmd_validate(args) -> int:
    from ssl_modal.data.validate import main_validate

    return main_validate(args.schema, args.file, column_map(args))


def column_map(args) -> dict[str, str]:
    """{schema column: file column} from --recipe (a transactions recipe's columns: block) and --map a=b."""
    mapping: dict[str, str] = {}
    if args.recipe:
        from ssl_modal.core.config import recipe_dict

        _, data = recipe_dict(args.recipe, [], False)
        columns = data.get("columns") or {}
        roles = {
            "client_id": "client_id",
            "event_time": "event_time",
            "amount": "amount",
            "mcc": "mcc",
            "transaction_id": "transaction_id",
        }
        for role, key in roles.items():
            if isinstance(columns.get(role), str):
                mapping[key] = columns[role]
        if not mapping:
            raise ValueError(
                f"{args.recipe}: --recipe needs a recipe with a columns: block (client_id, event_time, "
                "amount, mcc); found none"
            )
    for item in args.map or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--map: expected SCHEMA_COLUMN=FILE_COLUMN (e.g. amount=amt), found '{item}'")
        mapping[key] = value
    return mapping


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
    step = ckpt.get("step", (ckpt.get("trainer") or {}).get("step"))
    summary = {
        "kind": spec.get("kind"),
        "builder": spec.get("builder"),
        "format_version": ckpt["format_version"],
        "written_by": f"ssl-modal {ckpt['library_version']}",
        "parameters": n_params,
        "step": step if step is not None else "unknown (written before ssl-modal stored it)",
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
    parser.add_argument("--version", action="version", version=f"ssl-modal {_version()}")
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
    p.add_argument(
        "-o", "--output", required=True, help=".parquet, .npy, .csv, or a path without a suffix for a datasets folder"
    )
    p.add_argument("--format", choices=["parquet", "npy", "csv", "dataset"], help="instead of the output's suffix")
    p.add_argument("--column", help="the input column: text, caption or image path column, audio path column")
    p.add_argument(
        "--id-column", help="column carried into the output under its own name (default: 'row', the 1-based data row)"
    )
    p.add_argument(
        "--on-error",
        choices=["error", "skip"],
        default="error",
        help="empty texts, unreadable audio/video/images: stop with an error, or skip and count them",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.set_defaults(func=cmd_embed)
    add_transactions_commands(sub)
    p = sub.add_parser("validate", help="check a data file against a schema in data_schemas/")
    p.add_argument("schema", help="schema name (e.g. text_corpus) or path")
    p.add_argument("file")
    p.add_argument("--recipe", help="take the column names from a recipe's columns: block (e.g. amount: amt)")
    p.add_argument("--map", nargs="+", metavar="SCHEMA=FILE", help="column names, e.g. amount=amt client_id=cc_num")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("inspect", help="summarise a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--full", action="store_true", help="also print the training config")
    p.set_defaults(func=cmd_inspect)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ssl-modal")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags and key=value overrides in any order (`train R --demo train.max_steps=2`)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [e for e in extra if "=" in e and not e.startswith("-")]
    takes_overrides = hasattr(args, "overrides")
    unknown = [e for e in extra if e not in overrides or not takes_overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ssl_modal.core.script import USER_ERRORS, report_user_error

    try:
        return args.func(args)
    except USER_ERRORS as exc:
        return report_user_error(exc)


if __name__ == "__main__":
    sys.exit(main())
