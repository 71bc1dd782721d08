"""Aligner recipe steps: train on image-caption pairs, evaluate retrieval + zero-shot, export, plot."""

from __future__ import annotations

import dataclasses
import glob
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ssl_modal.core import checkpoint as ckpt_io
from ssl_modal.core.config import to_dict
from ssl_modal.core.eval_data import EvalData
from ssl_modal.core.export import export, load_model
from ssl_modal.core.plots import pyplot, save_figure
from ssl_modal.core.trainer import Trainer, TrainResult

from .config import AlignerConfig
from .data import PairDataset, Pairs, check_images, image_transform, load_image, read_pairs, split_by_group
from .evaluate import (
    RetrievalTable,
    chance_recall,
    class_mentions,
    encode_images,
    encode_texts,
    recall_at_k,
    single_class_captions,
    zero_shot,
)
from .model import build_aligner_model, text_tower_features
from .tokenizer import count_truncated, train_wordpiece
from .towers import resolve_pretrained

Config = AlignerConfig
log = logging.getLogger(__name__)


def read_split(cfg: AlignerConfig) -> tuple[Pairs, Pairs]:
    """(train, held-out) pairs, split by image; the held-out pairs come from `eval.test` when it is set."""
    d = cfg.data
    pairs = read_pairs(d.manifest, d.image_column, d.caption_column, d.group_column, d.image_root, d.max_groups)
    train_pairs, test = split_by_group(pairs, d.test_fraction, d.split_seed)
    _, t = EvalData(test=cfg.eval.test).resolve(d)
    if t is None:
        return train_pairs, test
    if len(test):
        log.info(
            "aligner: eval.test is set, so the %d pairs data.test_fraction=%s holds out are neither trained on "
            "nor evaluated (set data.test_fraction=0 to train on them)",
            len(test),
            d.test_fraction,
        )
    test = read_pairs(t.manifest, t.image_column, t.caption_column, t.group_column, t.image_root, t.max_groups)
    shared = sorted(set(map(_resolved, train_pairs.paths)) & set(map(_resolved, test.paths)))
    if shared:
        raise ValueError(
            f"eval.test manifest {t.manifest} shares {len(shared)} image(s) with the training data "
            f"{d.manifest} (e.g. {shared[0]}): expected images unseen in training"
        )
    return train_pairs, test


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def model_config(cfg: AlignerConfig, captions: list[str], tokenizer_json: str | None = None) -> dict:
    """The plain-dict model config; a from-scratch text tower gets `tokenizer_json`, else a WordPiece trained on
    `captions`."""
    config = dataclasses.asdict(cfg.model)
    config["tokenizer_json"] = None
    if not cfg.model.text.pretrained_path:
        config["tokenizer_json"] = tokenizer_json or train_wordpiece(captions, cfg.model.text.vocab_size)
    return config


def recipe_vocabulary(cfg: AlignerConfig, captions: list[str]) -> str | None:
    """The run's caption WordPiece (None with a pretrained text tower): trained once and saved to
    `<output_dir>/tokenizer.json`, reused when resuming (WordPiece training breaks frequency ties differently in
    each process, and another vocabulary is another model: its checkpoints would be refused)."""
    if cfg.model.text.pretrained_path:
        return None
    saved = Path(cfg.train.output_dir) / "tokenizer.json"
    if cfg.train.resume and saved.is_file():
        log.info("reusing the caption vocabulary trained earlier: %s", saved)
        return saved.read_text()
    vocabulary = train_wordpiece(captions, cfg.model.text.vocab_size)
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = saved.with_suffix(".json.partial")
    partial.write_text(vocabulary)
    partial.replace(saved)  # never a half-written vocabulary to resume from
    return vocabulary


def train(cfg: AlignerConfig) -> TrainResult:
    """Contrastive training on the training split; the final model is `<train.output_dir>/model.pt`."""
    train_pairs, _ = read_split(cfg)
    check_images(train_pairs)  # before anything is written to output_dir
    head = cfg.model.image.head if cfg.model.image.arch == "patches" else None
    if head == "chi2":
        return fit_closed_form(cfg, train_pairs)
    torch.manual_seed(cfg.train.seed)
    config = model_config(cfg, train_pairs.captions, recipe_vocabulary(cfg, train_pairs.captions))
    if head == "mlp+chi2":
        config = kernel_config(cfg, config, len(set(train_pairs.paths)))
    model = build_aligner_model(config)
    count_truncated(model.tokenizer, train_pairs.captions, cfg.model.text.max_length, train_pairs.source)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "aligner: %s parameters (%s trainable), %d training pairs", f"{total:,}", f"{trainable:,}", len(train_pairs)
    )
    transform = train_transform(cfg)
    features = None
    if cfg.model.text.locked and cfg.data.cache_text:
        features = text_tower_features(model, train_pairs.captions, cfg.eval.batch_size)
        log.info(
            "aligner: locked text tower features of %d captions computed once (%s)",
            len(features),
            tuple(features.shape),
        )
    maps = fit_patch_front(model, train_pairs, cfg, transform) if head else None
    if head == "mlp+chi2":
        fit_kernel_head(model, cfg, train_pairs, maps, features)
    data = PairDataset(
        train_pairs,
        transform,
        by_image=cfg.data.sample_captions,
        text_features=features,
        cache=cfg.data.cache_images,
        image_maps=maps,
    )
    return Trainer(cfg.train).fit(model, data, model.collate)


def train_transform(cfg: AlignerConfig):
    d = cfg.data
    return image_transform(
        cfg.model.image.image_size,
        train=True,
        crop_scale=d.random_resized_crop,
        flip=d.horizontal_flip,
        augment=d.augment,
        color_jitter=d.color_jitter,
    )


def kernel_config(cfg: AlignerConfig, config: dict, n_images: int) -> dict:
    """The model config of a chi2 kernel head: its support size and the locked text tower's width as targets."""
    head = cfg.model.image.head
    if not (cfg.model.text.pretrained_path and cfg.model.text.locked):
        raise ValueError(
            f"model.image.head '{head}' regresses onto a locked pretrained text tower: set "
            "model.text.pretrained_path and model.text.locked: true"
        )
    from transformers import AutoConfig

    width = AutoConfig.from_pretrained(resolve_pretrained(cfg.model.text.pretrained_path)).hidden_size  # = its width
    config["image"].update(support=n_images * cfg.data.cached_views, target_dim=width)
    return config


def fit_kernel_head(
    model, cfg: AlignerConfig, train_pairs: Pairs, maps: dict[str, torch.Tensor], features: torch.Tensor | None = None
) -> None:
    """Chi2 kernel ridge from each training image's map (every cached view) onto the normalised mean of its
    captions' locked text features (`features`, computed here when not given), solved in closed form."""
    paths = list(dict.fromkeys(train_pairs.paths))
    if features is None:
        features = text_tower_features(model, train_pairs.captions, cfg.eval.batch_size)
    captions = F.normalize(features, dim=-1)
    owner = torch.as_tensor(pd.Index(paths).get_indexer(train_pairs.paths))
    targets = F.normalize(torch.zeros(len(paths), captions.shape[1]).index_add_(0, owner, captions), dim=-1)
    stacked = torch.stack([maps[p] for p in paths])
    if cfg.data.cached_views > 1:  # every view a support row with its image's target
        stacked, targets = stacked.flatten(0, 1), targets.repeat_interleave(cfg.data.cached_views, 0)
    model.encoder.image_tower.fit_head(stacked, targets)
    log.info("aligner: chi2 kernel ridge head fitted on %d maps (closed form)", len(stacked))


def fit_closed_form(cfg: AlignerConfig, train_pairs: Pairs) -> TrainResult:
    """Head `chi2`: no gradient steps. The patch front and the kernel head are fitted; both projections are the
    identity, so the shared space is the text tower's. Writes `<train.output_dir>/model.pt`."""
    if cfg.model.slip:
        raise ValueError("model.slip adds a loss to gradient steps; model.image.head 'chi2' takes none: unset one")
    config = kernel_config(cfg, model_config(cfg, train_pairs.captions), len(set(train_pairs.paths)))
    width = config["image"]["target_dim"]
    config["embed_dim"] = width
    log.info("aligner: head chi2: the shared space is the text tower's (%d), model.embed_dim is not used", width)
    torch.manual_seed(cfg.train.seed)
    model = build_aligner_model(config)
    fit_kernel_head(model, cfg, train_pairs, fit_patch_front(model, train_pairs, cfg, train_transform(cfg)))
    encoder = model.encoder
    with torch.no_grad():
        encoder.image_proj.weight.copy_(torch.eye(width))
        encoder.text_proj.weight.copy_(torch.eye(width))
    out = Path(cfg.train.output_dir)
    checkpoint = ckpt_io.atomic_save(
        ckpt_io.make_checkpoint(model, train_config=to_dict(cfg.train), step=0), out / "model.pt"
    )
    return TrainResult(step=0, output_dir=out, checkpoint=checkpoint)


def fit_patch_front(model, train_pairs: Pairs, cfg: AlignerConfig, augment=None) -> dict[str, torch.Tensor]:
    """Fit the patch dictionary on the training images (+ `data.unlabelled_images`), then cache each training
    image's response map (path -> (K, grid, grid)), or with `data.cached_views` V > 1 the maps of the plain image
    and of V - 1 draws of the training transform `augment` (path -> (V, K, grid, grid))."""
    transform = image_transform(cfg.model.image.image_size, train=False)
    paths = list(dict.fromkeys(train_pairs.paths))
    images = [load_image(p) for p in paths]
    pixels = torch.stack([transform(im) for im in images])
    extra = sorted(glob.glob(cfg.data.unlabelled_images)) if cfg.data.unlabelled_images else []
    if cfg.data.unlabelled_images and not extra:
        raise ValueError(f"data.unlabelled_images: no file matches '{cfg.data.unlabelled_images}'")
    unlabelled = torch.cat([pixels, *[transform(load_image(p))[None] for p in extra]])
    d, default = cfg.data, type(cfg.data)()
    ignored = [
        k
        for k in ("random_resized_crop", "horizontal_flip", "augment", "color_jitter", "cache_images")
        if _plain(getattr(d, k)) != _plain(getattr(default, k))
    ]
    views = cfg.data.cached_views
    if views > 1 and augment is None:
        raise ValueError("data.cached_views > 1 needs the training transform to draw the views from")
    if ignored and views == 1:
        log.warning(
            "aligner: data.%s do not apply to image.arch 'patches': it trains on random windows of its "
            "cached response maps (set data.cached_views > 1 to cache augmented views)",
            ", data.".join(ignored),
        )
    tower = model.encoder.image_tower
    tower.fit(unlabelled, seed=cfg.train.seed)
    log.info(
        "aligner: patch dictionary of %d centroids fitted on %d images (%d unlabelled extra)%s",
        tower.k,
        len(unlabelled),
        len(extra),
        "" if tower.k else ": none, the maps are raw RGB thumbnails",
    )

    def front(batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([tower.front(batch[i : i + 64]) for i in range(0, len(batch), 64)])

    maps = [front(pixels)]
    for _ in range(views - 1):  # torchvision's draws follow torch's global RNG, seeded with train.seed
        maps.append(front(torch.stack([augment(im) for im in images])))
    stacked = maps[0] if views == 1 else torch.stack(maps, dim=1)
    if views > 1:
        log.info("aligner: %d views of each of %d training images cached as maps", views, len(paths))
    return dict(zip(paths, stacked, strict=True))


def class_labels(pairs: Pairs, class_names: list[str]) -> tuple[list[str], np.ndarray]:
    """Zero-shot labels from captions: an image's class is the one class word found in most of its captions.

    Images whose majority names no class or several are left out. Returns (image paths, class index).
    """
    named = pd.DataFrame(class_mentions(pairs.captions, class_names), columns=class_names)
    votes = named.groupby(np.asarray(pairs.paths)).mean()
    winners = votes >= 0.5
    keep = winners.sum(axis=1) == 1
    return votes.index[keep].tolist(), winners[keep].to_numpy().argmax(axis=1)


def score(model, pairs: Pairs, cfg: AlignerConfig, corpus: list[str] | None = None) -> dict[str, float]:
    """Retrieval recalls on `pairs`, and zero-shot accuracy from the templates and (given `corpus`, the training
    captions) from caption prompts."""
    images = list(dict.fromkeys(pairs.paths))
    index = {p: i for i, p in enumerate(images)}
    text_image = np.array([index[p] for p in pairs.paths])
    row = recall_at_k(
        encode_images(model, images, cfg.eval.batch_size),
        encode_texts(model, pairs.captions, cfg.eval.batch_size),
        text_image,
    )
    paths, labels = class_labels(pairs, cfg.eval.zero_shot_classes)
    if len(paths):
        classes, size = cfg.eval.zero_shot_classes, cfg.eval.batch_size
        predicted, _ = zero_shot(model, paths, classes, templates=cfg.eval.zero_shot_templates, batch_size=size)
        row["zero_shot_acc"] = float(np.mean(predicted == labels))
        if corpus is not None:
            predicted, _ = zero_shot(model, paths, classes, captions=corpus, batch_size=size)
            row["zero_shot_cap_acc"] = float(np.mean(predicted == labels))
    return row


def evaluate(cfg: AlignerConfig, model=None) -> RetrievalTable:
    """Retrieval R@1/5/10 both ways + zero-shot accuracy on the held-out images: chance, random init, trained."""
    train_pairs, test = read_split(cfg)
    if not len(test):
        raise ValueError("nothing to evaluate: data.test_fraction is 0 and eval.test is not set")
    model = model if model is not None else load_model(cfg.train.output_dir)
    count_truncated(model.tokenizer, test.captions, cfg.model.text.max_length, f"{test.source} (held-out)")
    n_images = len(np.unique(test.groups))
    table = RetrievalTable(n_images=n_images, n_captions=len(test))
    chance = chance_recall(n_images, len(test) / n_images)
    paths, labels = class_labels(test, cfg.eval.zero_shot_classes)
    corpus = None
    if len(paths):
        chance["zero_shot_acc"] = float(np.max(np.bincount(labels)) / len(labels))
        table.notes.append(
            f"zero-shot: {len(paths)} held-out images labelled from their captions with one of "
            f"{cfg.eval.zero_shot_classes}; chance row = majority class share"
        )
        corpus = caption_corpus(train_pairs, cfg.eval.zero_shot_classes)
        if corpus is not None:
            chance["zero_shot_cap_acc"] = chance["zero_shot_acc"]
            table.notes.append(
                "zero_shot_acc: prompt templates (CLIP's ensemble); zero_shot_cap_acc: class prompts = the training "
                "captions naming only that class, their class shares as prior (text only, no image labels)"
            )
    table.rows["chance"] = chance
    if cfg.eval.baselines:
        torch.manual_seed(cfg.train.seed + 1)
        random_model = build_aligner_model(model.spec.config)
        table.rows["random-init model"] = score(random_model, test, cfg, corpus)
    name = "trained (locked pretrained text)" if cfg.model.text.pretrained_path and cfg.model.text.locked else "trained"
    table.rows[name] = score(model, test, cfg, corpus)
    return table


def caption_corpus(train_pairs: Pairs, class_names: list[str]) -> list[str] | None:
    """The training captions as zero-shot prompts, or None (and why, logged) when a class is never named alone."""
    alone = single_class_captions(train_pairs.captions, class_names).sum(axis=0)
    missing = [c for c, n in zip(class_names, alone, strict=True) if n == 0]
    if missing:
        log.warning("aligner: no caption-prompt zero-shot: no training caption names %s without another class", missing)
        return None
    return train_pairs.captions


def export_embeddings(model, pairs: Pairs, out: Path, batch_size: int) -> tuple[Path, Path]:
    """Image embeddings (image_path column) and caption embeddings (image, caption columns) as Parquet."""
    images = pd.DataFrame({"image_path": list(dict.fromkeys(pairs.paths))})
    texts = pd.DataFrame({"image": pairs.paths, "caption": pairs.captions})
    return (
        export(
            model,
            images,
            out / "image_embeddings.parquet",
            id_columns=["image_path"],
            normalize=True,
            batch_size=batch_size,
            progress=False,
        ),
        export(
            model,
            texts,
            out / "text_embeddings.parquet",
            id_columns=["image", "caption"],
            normalize=True,
            batch_size=batch_size,
            progress=False,
        ),
    )


def plot_retrieval_grid(model, pairs: Pairs, png_path: Path, n_captions: int, batch_size: int) -> Path:
    """For a few held-out captions, the top-5 retrieved held-out images (green frame = the caption's image)."""
    images = list(dict.fromkeys(pairs.paths))
    image_emb = encode_images(model, images, batch_size)
    picks = np.linspace(0, len(pairs) - 1, n_captions).round().astype(int)
    text_emb = encode_texts(model, [pairs.captions[i] for i in picks], batch_size)
    plt = pyplot()
    fig, axes = plt.subplots(n_captions, 5, figsize=(11, 2.4 * n_captions), squeeze=False)
    for row, (i, query) in enumerate(zip(picks, text_emb, strict=True)):
        for col, j in enumerate(np.argsort(-(image_emb @ query))[:5]):
            ax = axes[row, col]
            ax.imshow(load_image(images[j]))
            hit = images[j] == pairs.paths[i]
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if hit else "lightgray")
                spine.set_linewidth(4 if hit else 1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_title(pairs.captions[i][:90], loc="left", fontsize=8)
    return save_figure(fig, png_path, dpi=90)
