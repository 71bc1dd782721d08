"""The video recipes' config: one dataclass per section of `recipes/video_tracking.yaml` / `video_frame_order.yaml`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssl_modal.core.ranges import (
    at_least,
    check_fields,
    dropout_rate,
    in_unit_interval,
    loss_weight,
    non_negative,
    positive,
    ranged,
)
from ssl_modal.core.trainer import TrainConfig


@dataclass
class EncoderConfig:
    """ResNet-style 2-D CNN on grayscale (L) frames: a stride-2 stem of `widths[0]` channels, then one stage of
    `blocks` basic blocks per further width, each halving the resolution (widths of length 3 -> stride 8),
    then a 1x1 projection to `embed_dim` (the tracking features; their spatial mean is the frame vector).
    `strides` (one per width, 1 or 2; default all 2) sets where the resolution halves: [2, 2, 1] gives a
    stride-4 map at the cost of a full-resolution last stage."""

    widths: list[int] = positive(factory=lambda: [32, 64, 128])
    strides: list[int] | None = ranged("[1, 2]", None)
    blocks: int = positive(1)
    embed_dim: int = positive(64)
    channels: str = "L"  # network input: "L" (colorization must not see colour) or "Lab"


PRECISIONS = ("float32", "bfloat16")


def encoder_strides(widths: list[int], strides: list[int] | None) -> list[int]:
    """The stride of the stem and of each stage (default all 2); raises on a wrong length or value."""
    if strides is None:
        return [2] * len(widths)
    if len(strides) != len(widths) or set(strides) - {1, 2}:
        raise ValueError(
            f"encoder.strides: expected one stride of 1 or 2 per width ({len(widths)} widths), found {strides}"
        )
    return list(strides)


@dataclass
class ColorizationConfig:
    """Vondrick et al. 2018: copy quantised colours from `num_refs` reference frames to the next frame."""

    weight: float = loss_weight(1.0)  # 0 disables the objective
    num_colors: int = at_least(2, 16)  # k-means clusters of ab
    num_refs: int = positive(3)  # reference frames before each target frame
    frame_gap: int = positive(2)  # frames between consecutive frames of a clip
    temperature: float = positive(1.0)
    kmeans_frames: int = positive(64)  # training frames sampled to fit the colour centres
    seed: int = non_negative(0)


@dataclass
class FrameOrderConfig:
    """VCOP (Xu et al. 2019): predict which of the n! permutations shuffled n frames (or short clips)."""

    weight: float = loss_weight(0.0)  # 0 disables the objective
    num_clips: int = 3  # n = 3 or 4
    clip_len: int = positive(1)  # frames per clip (their features are averaged)
    gap: int = non_negative(3)  # frames skipped between consecutive clips
    hidden: int = positive(128)  # width of the pair-wise MLP
    pool: int = positive(1)  # clip feature: feature maps pooled to pool x pool cells (1 = global mean)
    pair_diff: bool = False  # pair input [f_i, f_j, f_j - f_i] instead of VCOP's [f_i, f_j]
    dropout: float = dropout_rate(0.3)


@dataclass
class WalkConfig:
    """Contrastive random walk (Jabri et al. 2020) on clips of `clip_len` frames `frame_gap` apart, with crops
    (`crop` size, clip area fraction in `scale`, per-frame `jitter`) and optional colour jitter (`color_strength`,
    grayscale probability `gray_p`; off by default: on DAVIS they cost 0.11 J, docs/video.md); see
    ssl_modal/video/walk.py."""

    weight: float = loss_weight(0.0)  # 0 disables the objective
    clip_len: int = at_least(2, 4)
    frame_gap: int = positive(2)
    temperature: float = positive(0.07)
    edge_drop: float = dropout_rate(0.1)
    crop: list[int] = positive(factory=lambda: [96, 96])
    scale: list[float] = ranged("(0, 1]", factory=lambda: [0.3, 1.0])
    jitter: float = non_negative(0.1)
    color_strength: float = non_negative(0.0)
    gray_p: float = in_unit_interval(0.0)


@dataclass
class DataConfig:
    """Training videos (files, frame folders or glob patterns) and the DAVIS folder for evaluation."""

    train_videos: list[str] = field(default_factory=lambda: ["../shared/data/video/clips/*.mp4"])
    train_images: list[str] = field(default_factory=list)  # still images (random walk only): single-frame views
    # Sequence-disjoint protocol: with `folds` (lists of DAVIS sequence names), each fold is evaluated by a model
    # pretrained on the other folds' sequences only (their `fold_videos`, `{sequence}` filled in) + train_videos.
    folds: list[list[str]] | None = None
    fold_videos: list[str] = field(default_factory=lambda: ["../shared/data/video/clips/{sequence}.mp4"])
    heldout_videos: list[str] = field(default_factory=list)  # frame-order accuracy is measured on these
    size: list[int] = positive(factory=lambda: [128, 224])  # training (height, width), resized at decode
    davis_root: str = "../shared/data/video/davis"
    sequences: list[str] | None = None  # null: every sequence under davis_root/JPEGImages
    max_frames: int | None = positive(None)  # per evaluated sequence (null: all)
    on_error: str = "skip"  # unreadable training videos: "skip" (counted, reported) or "error"


@dataclass
class PropagationConfig:
    """Label propagation: context = first frame + last `context` frames, top-k, local radius, temperature."""

    context: int = non_negative(5)
    topk: int = positive(10)
    radius: float = non_negative(12)  # in feature cells (of `stride` pixels); 0 = no spatial limit
    temperature: float = positive(0.05)
    stride: int = positive(8)  # feature stride (pixels per cell); below the encoder's, frames are upsampled
    precision: str = "float32"  # of the similarities: "float32" or "bfloat16" (faster on CPUs with native bf16)
    # Pooled Lab colour mixed into the encoder rows' features (random-init and SSL alike): cell cosine =
    # (1 - lab_weight) * encoder + lab_weight * Lab. 0 = the encoder's features alone.
    lab_weight: float = in_unit_interval(0.0)
    # With folds: settings tried on each fold's *training* sequences (overrides of the keys above, e.g.
    # {radius: 6, stride: 4}); the best mean J&F of `select_by` there is used for every method. [] = as set.
    candidates: list[dict] = field(default_factory=list)
    select_by: list[str] = field(default_factory=lambda: ["raw-Lab", "SSL"])  # methods whose mean J&F chooses
    # Then (with folds) the lab_weight values tried with the chosen setting, chosen by the SSL row's mean J&F on
    # the same training sequences. [] = lab_weight as set.
    lab_weights: list[float] = in_unit_interval(factory=list)


@dataclass
class EvalConfig:
    baselines: bool = True  # copy-first-frame, raw Lab pixels, random-init encoder
    overlays: int = non_negative(4)  # overlay frames saved per sequence (PNG strip); 0 = none
    bound_th: float = positive(0.008)  # DAVIS boundary tolerance (fraction of the image diagonal)
    window: int = positive(8)  # clip-embedding export: frames per window
    window_stride: int = positive(8)
    frame_order_batches: int = non_negative(20)  # held-out frame-order accuracy: batches of train.batch_size
    only_fold: int | None = non_negative(None)  # with data.folds: run this fold only (its result is kept in
    # fold<k>/fold.json; the pooled table is printed once every fold has one)


@dataclass
class VideoConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    colorization: ColorizationConfig = field(default_factory=ColorizationConfig)
    frame_order: FrameOrderConfig = field(default_factory=FrameOrderConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    demo: dict = field(default_factory=dict)  # merged over the rest by `--demo`

    def __post_init__(self) -> None:  # sections built in Python: the ranges the recipe loader checks
        check_fields(self)
        encoder_strides(self.encoder.widths, self.encoder.strides)
        if self.propagation.precision not in PRECISIONS:
            raise ValueError(
                f"propagation.precision: expected one of {sorted(PRECISIONS)}, found {self.propagation.precision!r}"
            )
