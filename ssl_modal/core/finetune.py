"""Fine-tuning evaluation: the pretrained encoder plus a linear head trained on labels with the shared Trainer.

    result = finetune(model, train_examples, train_labels, test_examples=..., test_labels=...)
    ProbeTable([probe_result, result])      # same table type as `probe`

The user's model is left untouched (the encoder is copied). The encoder learns at `encoder_lr_scale` times
the head's learning rate; a stratified validation split of the training examples drives early stopping
(skipped, with fixed steps, when it would hold fewer examples than there are classes).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor, nn

from .contract import Encoder, Objective, SSLModel, move_to
from .evaluate import ProbeResult
from .export import encode
from .trainer import TrainConfig, Trainer

log = logging.getLogger("ssl_modal")


class Classify(Objective):
    """Cross-entropy of a linear head on the encoder's pooled output; labels in batch["labels"]."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n_classes)

    def forward(self, encoder: Encoder, batch: dict) -> dict[str, Tensor]:
        logits = self.head(encoder(batch).pooled).float()
        labels = batch["labels"]
        return {
            "loss": F.cross_entropy(logits, labels),
            "accuracy": (logits.argmax(1) == labels).float().mean().detach(),
        }


def _with_labels(collate: Callable) -> Callable:
    def collate_labelled(items: list) -> dict:
        batch = collate([example for example, _ in items])
        if not isinstance(batch, dict):
            raise TypeError(f"finetune needs a collate that returns a dict batch, found {type(batch).__name__}")
        return {**batch, "labels": torch.tensor([label for _, label in items], dtype=torch.long)}

    return collate_labelled


def _pooled_dim(encoder: Encoder, collate: Callable, examples: Sequence) -> int:
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        dim = encoder(move_to(collate(list(examples[:2])), device)).pooled.shape[-1]
    encoder.train(was_training)
    return int(dim)


def finetune(
    model: SSLModel,
    train_examples: Sequence,
    train_labels: Sequence,
    collate: Callable | None = None,
    *,
    test_examples: Sequence,
    test_labels: Sequence,
    val_fraction: float = 0.15,
    max_steps: int = 300,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    encoder_lr_scale: float = 0.1,
    weight_decay: float = 0.01,
    patience: int = 5,
    eval_every: int = 20,
    seed: int = 0,
    k: int = 20,
    name: str = "fine-tuned",
    output_dir: str | None = None,
    autocast: str = "no",
    progress: bool = False,
) -> ProbeResult:
    """Train a copy of `model.encoder` + a linear head on (train_examples, train_labels); score on the test set.

    Returns a ProbeResult: linear_* = the fine-tuned head's accuracy / macro-F1 on the test examples,
    knn_* = distance-weighted cosine kNN on the fine-tuned encoder's embeddings (train -> test).
    """
    collate = collate or model.collate
    if collate is None:
        raise ValueError("finetune: no collate function: pass collate=... or build the model with one")
    train_y, test_y = np.asarray(train_labels), np.asarray(test_labels)
    if len(train_examples) != len(train_y) or len(test_examples) != len(test_y):
        raise ValueError(
            f"finetune: {len(train_examples)} training examples but {len(train_y)} labels, "
            f"{len(test_examples)} test examples but {len(test_y)} labels"
        )
    classes = np.unique(train_y)
    if classes.size < 2:
        raise ValueError(f"finetune: the training labels need at least 2 classes, found {classes.size}")
    unseen = sorted(set(test_y.tolist()) - set(classes.tolist()))
    if unseen:
        raise ValueError(f"finetune: test labels {unseen[:5]} never occur in the training labels")
    index = {c: i for i, c in enumerate(classes.tolist())}
    y_train = np.array([index[c] for c in train_y.tolist()])

    encoder = copy.deepcopy(model.encoder)
    classify = Classify(_pooled_dim(encoder, collate, train_examples), classes.size)
    tuned = SSLModel(encoder, {"classify": classify}, collate=collate)
    tuned.lr_scales = {"encoder.": encoder_lr_scale}

    all_idx = np.arange(len(y_train))
    n_val = int(round(val_fraction * len(all_idx)))
    if n_val >= classes.size and len(all_idx) - n_val >= classes.size:
        fit_idx, val_idx = train_test_split(all_idx, test_size=n_val, random_state=seed, stratify=y_train)
    else:
        fit_idx, val_idx = all_idx, np.array([], dtype=int)
        log.info(
            "finetune: %d labelled examples for %d classes: no validation split, %d fixed steps",
            len(all_idx),
            classes.size,
            max_steps,
        )
    pairs = [(train_examples[i], int(y_train[i])) for i in range(len(y_train))]
    fit_data = [pairs[i] for i in fit_idx]
    val_data = [pairs[i] for i in val_idx] or None
    with contextlib.ExitStack() as stack:  # no output_dir: the run's checkpoints go to a folder removed afterwards
        run_dir = output_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="ssl_modal_finetune_"))
        config = TrainConfig(
            output_dir=run_dir,
            max_steps=max_steps,
            batch_size=min(batch_size, len(fit_data)),
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_steps=max(1, max_steps // 10),
            seed=seed,
            log_every=max(1, eval_every),
            checkpoint_every=max_steps,
            keep_last=1,
            monitor_every=0,
            eval_every=eval_every if val_data else 0,
            early_stopping_patience=patience if val_data else 0,
            resume=False,
            progress=progress,
            tensorboard=False,
            autocast=autocast,
        )
        torch.manual_seed(seed)
        Trainer(config).fit(tuned, fit_data, _with_labels(collate), val_data=val_data)

    tuned.eval()
    test_emb = encode(tuned, list(test_examples), batch_size=batch_size)
    train_emb = encode(tuned, list(train_examples), batch_size=batch_size)
    with torch.no_grad():
        weight_device = classify.head.weight.device
        logits = classify.head(torch.from_numpy(test_emb).to(weight_device))
    pred = classes[logits.argmax(1).cpu().numpy()]
    k_used = min(k, len(train_emb))
    knn = KNeighborsClassifier(n_neighbors=k_used, weights="distance", metric="cosine", algorithm="brute")
    knn_pred = knn.fit(train_emb, train_y).predict(test_emb)
    return ProbeResult(
        name=name,
        linear_acc=float(accuracy_score(test_y, pred)),
        linear_f1=float(f1_score(test_y, pred, average="macro", zero_division=0)),
        knn_acc=float(accuracy_score(test_y, knn_pred)),
        knn_f1=float(f1_score(test_y, knn_pred, average="macro", zero_division=0)),
        linear_acc_std=0.0,
        linear_f1_std=0.0,
        knn_acc_std=0.0,
        knn_f1_std=0.0,
        n_train=len(train_y),
        n_test=len(test_y),
        n_classes=int(classes.size),
        folds=1,
        k=k_used,
    )
