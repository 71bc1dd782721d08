"""CLIP-style aligner: two towers, linear projections to a shared space, a learnable temperature."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_modal.core.contract import Encoder, EncoderOutput, ModelSpec, Objective, SSLModel

from .data import image_transform, load_image
from .loss import contrastive_loss, gather_no_grad, gather_with_grad
from .patches import random_windows
from .slip import slip_objective
from .tokenizer import load_tokenizer
from .towers import TextTower, build_image_tower, lock


class AlignerEncoder(Encoder):
    """`encode_image` / `encode_text` map into one `embed_dim` space; `forward` encodes whichever the batch holds."""

    def __init__(self, config: dict, vocab_size: int, pad_id: int):
        super().__init__()
        self.image_tower, image_width = build_image_tower(config["image"])
        self.text_tower = TextTower(config["text"], vocab_size, pad_id)
        self.image_proj = nn.Linear(image_width, config["embed_dim"], bias=False)
        self.text_proj = nn.Linear(self.text_tower.width, config["embed_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config["init_logit_scale"])))
        self.max_logit_scale = float(config["max_logit_scale"])
        self.locked = [
            t for t, key in ((self.image_tower, "image"), (self.text_tower, "text")) if config[key].get("locked")
        ]
        for tower in self.locked:
            lock(tower)

    def train(self, mode: bool = True):
        super().train(mode)
        for tower in self.locked:  # a locked tower keeps eval behaviour (no dropout, frozen norms)
            tower.eval()
        return self

    def scale(self) -> Tensor:
        """exp(logit_scale), the logit scale clamped at `max_logit_scale` (ln 100)."""
        return self.logit_scale.clamp(max=self.max_logit_scale).exp()

    def encode_image(self, pixel_values: Tensor, normalize: bool = False) -> Tensor:
        features = self.image_proj(self.image_tower(pixel_values))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor, normalize: bool = False) -> Tensor:
        features = self.text_proj(self.text_tower(input_ids, attention_mask))
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, batch: dict) -> EncoderOutput:
        """Embeddings; with a fused head (`model.image.head: mlp+chi2`) the concatenation of the normalised trained
        embedding and the normalised kernel / text-tower feature, over sqrt 2: the cosine of two such vectors is
        the mean of the two cosines (an equal-weight score fusion). `encode_image` / `encode_text` give the trained
        half alone (what the contrastive loss trains)."""
        fused = self.fused
        if "image_maps" in batch:  # cached views (B, V, K, g, g): the plain view 0
            maps = batch["image_maps"]
            pooled = self.embed_maps(maps[:, 0] if maps.dim() == 5 else maps)
        elif "pixel_values" in batch:
            pixels = batch["pixel_values"]
            pooled = self.embed_maps(self.image_tower.front(pixels)) if fused else self.encode_image(pixels)
        elif "input_ids" in batch:
            features = self.text_tower(batch["input_ids"], batch["attention_mask"])
            pooled = self.text_proj(features)
            if fused:
                pooled = fuse(pooled, features)
        else:
            raise KeyError(f"aligner batch: expected 'pixel_values' or 'input_ids', found keys {sorted(batch)}")
        mask = torch.ones(pooled.shape[0], 1, dtype=torch.bool, device=pooled.device)
        return EncoderOutput(tokens=pooled[:, None], mask=mask, pooled=pooled)

    @property
    def fused(self) -> bool:
        return getattr(self.image_tower, "kind", None) == "mlp+chi2"

    def embed_maps(self, maps: Tensor) -> Tensor:
        """A patch tower's response maps -> embeddings (fused with the kernel head's when the head is mlp+chi2)."""
        pooled = self.image_proj(self.image_tower.head(maps))
        return fuse(pooled, self.image_tower.kernel_head(maps)) if self.fused else pooled


def fuse(a: Tensor, b: Tensor) -> Tensor:
    """[a / |a|, b / |b|] / sqrt 2: unit vectors whose dot product is the mean of the two cosines."""
    return torch.cat([F.normalize(a, dim=-1), F.normalize(b, dim=-1)], dim=-1) / 2**0.5


class Contrastive(Objective):
    """Symmetric InfoNCE over image-text pairs; under torchrun the negatives come from every rank."""

    def forward(self, encoder: AlignerEncoder, batch: dict) -> dict[str, Tensor]:
        if "image_maps" in batch:  # a frozen patch-dictionary front, its maps cached: random windows, then the head
            maps = random_windows(batch["image_maps"], self.rng(batch["image_maps"].device))
            image = F.normalize(encoder.image_proj(encoder.image_tower.head(maps)), dim=-1)
        else:
            image = encoder.encode_image(batch["pixel_values"], normalize=True)
        text = encode_batch_text(encoder, batch, self.rng(image.device))
        groups = batch["group"]
        scale = encoder.scale()
        out = contrastive_loss(
            image, text, gather_with_grad(image), gather_with_grad(text), groups, gather_no_grad(groups), scale
        )
        out["logit_scale"] = scale.detach()
        return out


def one_caption_per_image(caption_image: Tensor, n_images: int, generator: torch.Generator) -> Tensor:
    """Row indices drawing one caption per image (image j's rows are those with caption_image == j), in image order."""
    draw = torch.rand(caption_image.shape[0], generator=generator, device=generator.device).to(caption_image.device)
    order = torch.argsort(caption_image.to(draw.dtype) * 2 + draw)
    owners = caption_image[order]
    first = torch.ones_like(owners, dtype=torch.bool)
    first[1:] = owners[1:] != owners[:-1]
    picked = order[first]
    if picked.shape[0] != n_images:
        raise ValueError(
            f"caption sampling: expected a caption for each of the {n_images} images, found {picked.shape[0]}"
        )
    return picked


def encode_batch_text(encoder: AlignerEncoder, batch: dict, generator: torch.Generator) -> Tensor:
    """L2-normalised text features, one row per image row of the batch.

    Precomputed locked-tower features ("text_features") skip the text tower; with "caption_image" (all captions
    of each image in the batch), one caption per image is drawn from `generator`.
    """
    rows = None
    if "caption_image" in batch:
        rows = one_caption_per_image(batch["caption_image"], batch["group"].shape[0], generator)
    if "text_features" in batch:
        features = batch["text_features"] if rows is None else batch["text_features"][rows]
        return F.normalize(encoder.text_proj(features), dim=-1)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if rows is not None:
        ids, mask = ids[rows], mask[rows]
    return encoder.encode_text(ids, mask, normalize=True)


class AlignerCollate:
    """Items with "pixel_values" (or "image_path", decoded and resized here) and/or "caption" -> a batch."""

    def __init__(self, tokenizer, max_length: int, image_size: int, padding: str = "longest"):
        self.tokenizer, self.max_length, self.padding = tokenizer, max_length, padding  # or "max_length"
        self.transform = image_transform(image_size, train=False)

    def __call__(self, items: list[dict]) -> dict:
        batch = {}
        if "pixel_values" in items[0] or "image_path" in items[0]:
            batch["pixel_values"] = torch.stack(
                [
                    it["pixel_values"] if "pixel_values" in it else self.transform(load_image(it["image_path"]))
                    for it in items
                ]
            )
        if "caption" in items[0] or "captions" in items[0]:
            captions = (
                [it["caption"] for it in items]
                if "caption" in items[0]
                else [c for it in items for c in it["captions"]]
            )
            tokens = self.tokenizer(
                captions, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        if "text_features" in items[0]:
            features = [it["text_features"] for it in items]
            batch["text_features"] = torch.cat(features) if features[0].dim() == 2 else torch.stack(features)
        if "captions" in items[0] or ("text_features" in items[0] and items[0]["text_features"].dim() == 2):
            counts = [len(it["captions"]) if "captions" in it else it["text_features"].shape[0] for it in items]
            batch["caption_image"] = torch.repeat_interleave(torch.arange(len(items)), torch.as_tensor(counts))
        if "image_maps" in items[0]:
            batch["image_maps"] = torch.stack([it["image_maps"] for it in items])
        if "group" in items[0]:
            batch["group"] = torch.as_tensor(np.asarray([it["group"] for it in items], dtype=np.int64))
        return batch


def build_aligner_model(config: dict) -> SSLModel:
    """The aligner from a plain config: {"image": {...}, "text": {...}, "embed_dim", "init_logit_scale",
    "max_logit_scale", "tokenizer_json"} (see AlignerModelConfig; the WordPiece JSON travels with the model)."""
    tokenizer = load_tokenizer(config["text"], config.get("tokenizer_json"))
    encoder = AlignerEncoder(config, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id or 0)
    collate = AlignerCollate(tokenizer, config["text"]["max_length"], config["image"]["image_size"])
    spec = ModelSpec(builder="ssl_modal.aligner.model:build_aligner_model", config=config, kind="aligner")
    objectives, weights = {"contrastive": Contrastive()}, {"contrastive": 1.0}
    if config.get("slip"):
        objectives["slip"], weights["slip"] = slip_objective(config, encoder), float(config.get("slip_weight", 1.0))
    model = SSLModel(encoder, objectives, weights, spec=spec, collate=collate)
    model.tokenizer = tokenizer
    return model


@torch.no_grad()
def text_tower_features(model: SSLModel, captions: list[str], batch_size: int = 256) -> Tensor:
    """The text tower's pooled features (before the projection) of `captions`, (N, width) float32, in eval mode.

    For a locked tower these are exactly what training would compute each step, so they are computed once.
    """
    encoder, collate = model.encoder, model.collate
    was_training = encoder.text_tower.training
    encoder.text_tower.eval()
    try:
        parts = []
        for start in range(0, len(captions), batch_size):
            tokens = collate([{"caption": c} for c in captions[start : start + batch_size]])
            parts.append(encoder.text_tower(tokens["input_ids"], tokens["attention_mask"]).float())
        return torch.cat(parts)
    finally:
        encoder.text_tower.train(was_training)
