"""Image-text aligner (CLIP-style): contrastive training, retrieval Recall@K and zero-shot classification."""

from .config import AlignerConfig
from .data import Pairs, load_image, read_pairs, split_by_group
from .evaluate import RetrievalTable, encode_images, encode_texts, recall_at_k, zero_shot
from .loss import contrastive_loss, gather_with_grad
from .model import AlignerEncoder, build_aligner_model

__all__ = [
    "AlignerConfig",
    "AlignerEncoder",
    "Pairs",
    "RetrievalTable",
    "build_aligner_model",
    "contrastive_loss",
    "encode_images",
    "encode_texts",
    "gather_with_grad",
    "load_image",
    "read_pairs",
    "recall_at_k",
    "split_by_group",
    "zero_shot",
]
