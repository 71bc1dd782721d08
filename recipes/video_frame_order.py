"""Video frame-order (VCOP) recipe: pretrain, propagate DAVIS masks (J&F vs baselines), export clip embeddings.

    python recipes/video_frame_order.py --config recipes/video_frame_order.yaml [--demo] [key=value ...]

Prints the per-sequence J&F table (copy-first-frame, raw Lab pixels, random-init encoder, SSL encoder) and
the held-out frame-order accuracy and writes, under train.output_dir: model.pt, metrics.jsonl, loss_curve.png,
tracking.json, clip_embeddings.parquet and overlays/<sequence>.png.
"""

from __future__ import annotations

import sys

from ssl_modal.core.script import recipe_main
from ssl_modal.video.config import VideoConfig
from ssl_modal.video.recipe import run


def main(argv: list[str] | None = None) -> int:
    return recipe_main(
        lambda cfg: run(cfg, "video frame order"), VideoConfig, "recipes/video_frame_order.yaml", __doc__, argv
    )


if __name__ == "__main__":
    sys.exit(main())
