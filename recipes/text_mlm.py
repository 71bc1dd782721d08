"""Text MLM recipe: pretrain a BERT-style encoder, probe its frozen embeddings, export them.

    python recipes/text_mlm.py --config recipes/text_mlm.yaml [--demo] [key=value ...]

Prints a probe table (TF-IDF + logistic regression, a random-init encoder of the same architecture,
and the MLM encoder) and writes, under train.output_dir: model.pt, metrics.jsonl, loss_curve.png,
probe.json and embeddings_test.parquet.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ssl_modal.core.config import ConfigError, apply_overrides, from_dict, load_yaml
from ssl_modal.core.export import export, load_model
from ssl_modal.text.config import TextConfig
from ssl_modal.text.recipe import evaluate, metric_records, plot_loss_curve, read_split, train


def merge(base: dict, extra: dict) -> dict:
    """`extra` merged over `base`, recursing into nested mappings."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(path: str, demo: bool, overrides: list[str]) -> TextConfig:
    data = load_yaml(path)
    data.pop("domain", None)
    if demo:
        if not data.get("demo"):
            raise ConfigError(f"{path}: --demo needs a 'demo:' section")
        data = merge(data, data["demo"])
    try:
        return from_dict(TextConfig, apply_overrides(data, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def run(cfg: TextConfig) -> None:
    out = Path(cfg.train.output_dir)
    start = time.perf_counter()
    result = train(cfg)
    trained = time.perf_counter()
    model = load_model(result.checkpoint)
    table = evaluate(cfg, model)
    probed = time.perf_counter()
    test = read_split(cfg, "test")
    embeddings = export(model, test.texts, out / "embeddings_test.parquet", ids=test.rows,
                        batch_size=cfg.eval.batch_size, progress=False)
    curve = plot_loss_curve(out / "metrics.jsonl", out / "loss_curve.png")
    probe_json = table.to_json(out / "probe.json")
    last = (metric_records(out / "metrics.jsonl") or [{}])[-1]
    print(f"\nprobe on {cfg.data.test_file} (frozen embeddings, {table.results[-1].n_train} training texts):")
    print(table)
    print(f"\nfinal MLM loss {last.get('mlm/loss', float('nan')):.3f}, masked-token accuracy "
          f"{last.get('mlm/accuracy', float('nan')):.3f} at step {result.step}")
    print(f"time: pretraining {trained - start:.0f} s, probes {probed - trained:.0f} s, "
          f"total {time.perf_counter() - start:.0f} s")
    print("written:")
    for name, path in [("model", result.checkpoint), ("metrics", out / "metrics.jsonl"), ("loss curve", curve),
                       ("probe table", probe_json), ("test embeddings", embeddings)]:
        print(f"  {name:<16} {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="recipes/text_mlm.yaml", help="recipe YAML")
    parser.add_argument("--demo", action="store_true", help="apply the recipe's demo: section (offline sample)")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(load(args.config, args.demo, args.overrides))
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as exc:
        if os.environ.get("SSL_MODAL_DEBUG"):
            raise
        print(f"error: {exc}\n(set SSL_MODAL_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
