"""Video colorization-tracking recipe: pretrain, propagate DAVIS masks (J&F vs baselines), export clip embeddings.

    python recipes/video_tracking.py --config recipes/video_tracking.yaml [--demo] [key=value ...]

Prints the per-sequence J&F table (copy-first-frame, raw Lab pixels, random-init encoder, SSL encoder) and
writes, under train.output_dir: model.pt, metrics.jsonl, loss_curve.png, tracking.json, clip_embeddings.parquet
and overlays/<sequence>.png.
"""

from __future__ import annotations

import sys

from ssl_modal.core.script import recipe_main
from ssl_modal.video.config import VideoConfig
from ssl_modal.video.recipe import run


def main(argv: list[str] | None = None) -> int:
    def title(cfg) -> str:
        return "video tracking (" + ("random walk" if cfg.walk.weight else "colorization") + ")"

    return recipe_main(lambda cfg: run(cfg, title(cfg)), VideoConfig, "recipes/video_tracking.yaml", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
