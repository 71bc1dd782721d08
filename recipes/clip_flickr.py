"""Image-text aligner recipe: CLIP-style contrastive training, retrieval + zero-shot table, exports, plots.

    python recipes/clip_flickr.py --config recipes/clip_flickr.yaml [--demo] [key=value ...]

Prints image->text and text->image Recall@1/5/10 (and zero-shot accuracy) on held-out images for chance,
a randomly initialised model and the trained one, and writes, under train.output_dir: model.pt,
metrics.jsonl, loss_curve.png, retrieval_grid.png, retrieval.json, image_embeddings.parquet and
text_embeddings.parquet.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ssl_modal.aligner.config import AlignerConfig
from ssl_modal.aligner.recipe import evaluate, export_embeddings, plot_retrieval_grid, read_split, train
from ssl_modal.core.export import load_model
from ssl_modal.core.plots import plot_training_curves
from ssl_modal.core.script import recipe_main


def run(cfg: AlignerConfig) -> None:
    out = Path(cfg.train.output_dir)
    start = time.perf_counter()
    result = train(cfg)
    trained = time.perf_counter()
    model = load_model(result.checkpoint)
    _, test = read_split(cfg)
    if not len(test):
        print(
            f"trained in {trained - start:.0f} s; nothing held out (data.test_fraction=0, no eval.test), so no "
            f"retrieval table\nwritten:\n  {'model':<18} {result.checkpoint}"
        )
        return
    table = evaluate(cfg, model)
    evaluated = time.perf_counter()
    images, texts = export_embeddings(model, test, out, cfg.eval.batch_size)
    outputs = [("model", result.checkpoint)]
    if result.step:  # a closed-form head (model.image.head: chi2) takes no gradient steps: no curve
        curve = plot_training_curves(
            out,
            out / "loss_curve.png",
            f"image-text aligner ({out.name})",
            loss_label="contrastive loss",
            accuracies=[
                ("contrastive/acc_i2t", "in-batch image->text acc"),
                ("contrastive/acc_t2i", "in-batch text->image acc"),
            ],
        )
        outputs += [("metrics", out / "metrics.jsonl"), ("loss curve", curve)]
    outputs += [
        (
            "retrieval grid",
            plot_retrieval_grid(model, test, out / "retrieval_grid.png", cfg.eval.grid_captions, cfg.eval.batch_size),
        ),
        ("retrieval table", table.to_json(out / "retrieval.json")),
        ("image embeddings", images),
        ("text embeddings", texts),
    ]
    print(f"\nretrieval on held-out images of {cfg.data.manifest} (split by image):")
    print(table)
    print(
        f"time: training {trained - start:.0f} s, evaluation {evaluated - trained:.0f} s, "
        f"total {time.perf_counter() - start:.0f} s"
    )
    print("written:")
    for name, path in outputs:
        print(f"  {name:<18} {path}")


def main(argv: list[str] | None = None) -> int:
    return recipe_main(run, AlignerConfig, "recipes/clip_flickr.yaml", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
