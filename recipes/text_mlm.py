"""Text recipe: pretrain a BERT-style encoder (from scratch, or continued from a local model such as
all-MiniLM-L6-v2), probe its frozen embeddings, export them.

    python recipes/text_mlm.py --config recipes/text_mlm.yaml [--demo] [key=value ...]
    python recipes/text_mlm.py --config recipes/text_minilm.yaml            (continued pretraining)

Prints a probe table for every probe size (TF-IDF + logistic regression, a random-init encoder of the
same architecture, the frozen start model when continuing one, and the pretrained encoder) and writes, under
train.output_dir: model.pt, metrics.jsonl, loss_curve.png, probe.json and embeddings_test.parquet.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ssl_modal.core.export import export, load_model
from ssl_modal.core.monitors import training_records
from ssl_modal.core.script import recipe_main
from ssl_modal.text.config import TextConfig
from ssl_modal.text.recipe import evaluate, plot_loss_curve, read_split, train


def run(cfg: TextConfig) -> None:
    out = Path(cfg.train.output_dir)
    start = time.perf_counter()
    result = train(cfg)
    trained = time.perf_counter()
    model = load_model(result.checkpoint)
    table = evaluate(cfg, model)
    probed = time.perf_counter()
    test = read_split(cfg, "test")
    embeddings = export(
        model,
        test.texts,
        out / "embeddings_test.parquet",
        ids=test.rows,
        batch_size=cfg.eval.batch_size,
        progress=False,
    )
    curve = plot_loss_curve(out, out / "loss_curve.png")
    probe_json = table.to_json(out / "probe.json")
    last = (training_records(out) or [{}])[-1]
    print(f"\nprobes on eval.test {test.path} (frozen embeddings; n_train = first N texts of the probe data):")
    print(table)
    parts = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.endswith(("/loss", "/accuracy")))
    print(f"\nat step {result.step}: {parts}")
    rates = [v for k, v in last.items() if k.endswith("real_tokens_per_s")]
    if rates:
        print(f"real (non-padding) tokens/s over the last log window: {rates[0]:,.0f}")
    print(
        f"time: pretraining {trained - start:.0f} s, probes {probed - trained:.0f} s, "
        f"total {time.perf_counter() - start:.0f} s"
    )
    print("written:")
    for name, path in [
        ("model", result.checkpoint),
        ("metrics", out / "metrics.jsonl"),
        ("loss curve", curve),
        ("probe table", probe_json),
        ("test embeddings", embeddings),
    ]:
        print(f"  {name:<16} {path}")


def main(argv: list[str] | None = None) -> int:
    return recipe_main(run, TextConfig, "recipes/text_mlm.yaml", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
