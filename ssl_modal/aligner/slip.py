"""SLIP (Mu et al. 2021) inside the aligner: an image-only joint-embedding loss on two views of each image, added
to the image-text contrastive loss, through the core `JointEmbedding` objective.

    model:
      slip: {method: simclr, temperature: 0.1, hidden: 512, dim: 128}   # any core JointConfig keys
      slip_weight: 1.0
      views: [{name: pixel_crop, min_scale: 0.35}, {name: flip}]        # or [{name: map_crop}] (arch "patches")

View steps take the training batch and keep only its image ("pixel_values" or the cached "image_maps"); each
draws its randomness from the objective's generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_modal.core.config import ConfigError, from_dict
from ssl_modal.core.joint import JointConfig, JointEmbedding
from ssl_modal.core.views import TwoViews, build_pipeline

from .patches import random_windows

IMAGE_KEYS = ("pixel_values", "image_maps")


def _image(batch: dict) -> tuple[str, Tensor]:
    for key in IMAGE_KEYS:
        if key in batch:
            return key, batch[key]
    raise KeyError(f"SLIP views: expected one of {IMAGE_KEYS} in the batch, found keys {sorted(batch)}")


class MapCrop:
    """A random window of each cached response map (patch tower), resized back to the grid."""

    def __init__(self, min_scale: float = 0.5, max_scale: float = 1.0):
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"expected 0 < min_scale <= max_scale <= 1, found {min_scale}, {max_scale}")
        self.scale = (min_scale, max_scale)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        if "image_maps" not in batch:
            raise KeyError("view step map_crop needs cached patch maps (model.image.arch 'patches'); use pixel_crop")
        return {"image_maps": random_windows(batch["image_maps"], generator, self.scale)}


class PixelCrop:
    """A random square crop of each image (side min_scale..1 of the image side), resized back."""

    def __init__(self, min_scale: float = 0.35):
        if not 0 < min_scale <= 1:
            raise ValueError(f"expected 0 < min_scale <= 1, found {min_scale}")
        self.min_scale = min_scale

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        pixels = batch["pixel_values"]
        n, _, h, w = pixels.shape
        draws = torch.rand(n, 3, generator=generator, device=generator.device).cpu()
        out = []
        for i in range(n):
            side = max(2, int(min(h, w) * (self.min_scale + (1 - self.min_scale) * float(draws[i, 0]))))
            y, x = int(draws[i, 1] * (h - side + 1)), int(draws[i, 2] * (w - side + 1))
            out.append(
                F.interpolate(
                    pixels[i : i + 1, :, y : y + side, x : x + side],
                    size=(h, w),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            )
        return {"pixel_values": torch.cat(out)}


class Flip:
    """Mirror each example's image left-right with probability 1/2."""

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        key, image = _image(batch)
        flip = (torch.rand(image.shape[0], generator=generator, device=generator.device) < 0.5).to(image.device)
        return {key: torch.where(flip.view(-1, *[1] * (image.dim() - 1)), image.flip(-1), image)}


REGISTRY = {"map_crop": MapCrop, "pixel_crop": PixelCrop, "flip": Flip}


def default_views(arch: str) -> list[dict]:
    return [{"name": "map_crop"}] if arch == "patches" else [{"name": "pixel_crop"}, {"name": "flip"}]


def slip_parts(config: dict) -> tuple[JointConfig, TwoViews]:
    """`model.slip` as a JointConfig and `model.views` as views (ConfigError naming the key otherwise); the
    recipe's config calls this when it is loaded, before any image is read."""
    joint = from_dict(JointConfig, config["slip"], "model.slip")
    if joint.method == "byol":
        raise ConfigError(
            "model.slip.method: 'byol' would copy both towers as its target; use simclr, barlow or vicreg"
        )
    return joint, TwoViews(build_pipeline(config.get("views") or default_views(config["image"]["arch"]), REGISTRY))


def slip_objective(config: dict, encoder) -> JointEmbedding:
    """The core joint-embedding objective on the image tower's projected output (`model.slip` keys)."""
    joint, views = slip_parts(config)
    return JointEmbedding(joint, input_dim=config["embed_dim"], views=views)
