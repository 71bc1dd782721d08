"""Retrieval Recall@K in both directions, zero-shot classification, and their printed table."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.core.export import encode

KS = (1, 5, 10)


def encode_images(model, paths: list[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
    """One vector per image file (decoded, resized and centre-cropped by the model's collate)."""
    return encode(model, [{"image_path": p} for p in paths], batch_size=batch_size, normalize=normalize)


def encode_texts(model, captions: list[str], batch_size: int = 256, normalize: bool = True) -> np.ndarray:
    return encode(model, [{"caption": c} for c in captions], batch_size=batch_size, normalize=normalize)


def recall_at_k(image_emb: np.ndarray, text_emb: np.ndarray, text_image: np.ndarray, ks=KS) -> dict[str, float]:
    """image->text: an image scores a hit when any of its captions is in its top K; text->image: its image.

    image_emb: (I, D), text_emb: (T, D), both L2-normalised; text_image: (T,) index of each caption's image.
    """
    text_image = np.asarray(text_image)
    orphans = np.setdiff1d(np.arange(len(image_emb)), text_image)
    if len(orphans):
        raise ValueError(
            f"recall_at_k: images {orphans[:10].tolist()} have no caption among the {len(text_emb)} "
            f"captions; every image needs at least one"
        )
    sims = image_emb @ text_emb.T  # (I, T)
    out = {}
    ranked_texts = np.argsort(-sims, axis=1)  # per image, captions best first
    caption_is_mine = text_image[ranked_texts] == np.arange(len(image_emb))[:, None]
    first_hit = caption_is_mine.argmax(axis=1)
    ranked_images = np.argsort(-sims.T, axis=1)  # per caption, images best first
    image_rank = (ranked_images == text_image[:, None]).argmax(axis=1)
    for k in ks:
        out[f"i2t_R@{k}"] = float(np.mean(first_hit < k))
        out[f"t2i_R@{k}"] = float(np.mean(image_rank < k))
    return out


def chance_recall(n_images: int, captions_per_image: float, ks=KS) -> dict[str, float]:
    """Expected Recall@K of a random ranking (same keys as `recall_at_k`)."""
    n_texts = int(round(n_images * captions_per_image))
    out = {}
    for k in ks:
        # P(no caption of mine among k drawn without replacement from n_texts)
        miss = np.prod([(n_texts - captions_per_image - i) / (n_texts - i) for i in range(min(k, n_texts))])
        out[f"i2t_R@{k}"] = float(1 - max(miss, 0.0))
        out[f"t2i_R@{k}"] = float(min(1.0, k / n_images))
    return out


def class_mentions(captions: list[str], class_names: list[str]) -> np.ndarray:
    """(n_captions, n_classes) bool: caption i names class j (the word or its plural: -s, -es, -ren)."""
    low = pd.Series(list(captions), dtype=object).str.lower()
    columns = [low.str.contains(rf"\b{re.escape(c.lower())}(?:s|es|ren)?\b", regex=True) for c in class_names]
    return np.stack([c.to_numpy(dtype=bool) for c in columns], axis=1) if columns else np.zeros((len(low), 0), bool)


def single_class_captions(captions: list[str], class_names: list[str]) -> np.ndarray:
    """(n_captions, n_classes) bool: caption i names class j and no other of `class_names` (caption prompts)."""
    named = class_mentions(captions, class_names)
    return named & (named.sum(axis=1, keepdims=True) == 1)


def zero_shot(
    model,
    images: list[str],
    class_names: list[str],
    templates: list[str] | None = None,
    captions: list[str] | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index per image, (n_images, n_classes) probabilities); no labelled image is used.

    Give exactly one prompt source. `templates` ("a photo of a {}."): CLIP's prompt ensemble, each class embedding
    the normalised mean of its prompts' text embeddings. `captions`: a caption corpus (e.g. the training captions):
    each class embedding is the normalised mean of the corpus captions that name that class and no other one, and
    the class shares among those captions enter as a log prior on the scaled logits (Bayes' rule with a prior
    read from text).
    """
    if not class_names or (templates is None) == (captions is None):
        raise ValueError(
            "zero_shot needs class names and exactly one prompt source: templates (e.g. ['a photo of a {}.']) or "
            f"captions (a caption corpus); found {len(class_names)} class name(s), templates="
            f"{'set' if templates is not None else None}, captions={'set' if captions is not None else None}"
        )
    prior = np.zeros(len(class_names))
    if templates is not None:
        bad = [t for t in templates if "{}" not in t]
        if bad or not templates:
            raise ValueError(f"zero_shot templates must each contain '{{}}' for the class name, found {templates}")
        prompts = [t.format(c) for c in class_names for t in templates]
        text = encode_texts(model, prompts, batch_size).reshape(len(class_names), len(templates), -1).mean(axis=1)
    else:
        alone = single_class_captions(captions, class_names)
        missing = [c for c, n in zip(class_names, alone.sum(axis=0), strict=True) if n == 0]
        if missing:
            raise ValueError(
                f"zero_shot captions: none of the {len(captions)} captions names {missing} without naming another "
                f"class of {class_names}; expected at least one per class"
            )
        keep = np.flatnonzero(alone.any(axis=1))
        emb = encode_texts(model, [captions[i] for i in keep], batch_size)
        owner = alone[keep].argmax(axis=1)
        text = np.stack([emb[owner == j].mean(axis=0) for j in range(len(class_names))])
        prior = np.log(np.bincount(owner, minlength=len(class_names)) / len(keep))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    scale = float(model.encoder.scale().detach())
    logits = scale * (encode_images(model, images, batch_size) @ text.T) + prior
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1), probs


@dataclass
class RetrievalTable:
    """Rows of retrieval recalls (and zero-shot accuracy) side by side; str() is the printed table."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    n_images: int = 0
    n_captions: int = 0
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        keys = [f"{d}_R@{k}" for d in ("i2t", "t2i") for k in KS] + ["zero_shot_acc", "zero_shot_cap_acc"]
        keys = [k for k in keys if any(k in r for r in self.rows.values())]
        width = max(len(n) for n in self.rows) + 2
        cols = [max(14, len(k) + 2) for k in keys]
        lines = [f"{'model':<{width}}" + "".join(f"{k:>{c}}" for k, c in zip(keys, cols, strict=True))]
        for name, row in self.rows.items():
            cells = [f"{row[k]:>{c}.3f}" if k in row else f"{'-':>{c}}" for k, c in zip(keys, cols, strict=True)]
            lines.append(f"{name:<{width}}" + "".join(cells))
        lines.append(
            f"({self.n_images} held-out images, {self.n_captions} captions; R@K = share of queries whose "
            f"match is in the top K)"
        )
        return "\n".join(lines + self.notes)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path
