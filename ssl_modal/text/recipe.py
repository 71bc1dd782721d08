"""Recipe support for `domain: text`: MLM pretraining, then a frozen-encoder probe against baselines.

Used by `recipes/text_mlm.py` and by `ssl-modal train|eval recipes/text_mlm.yaml`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ssl_modal.core.evaluate import ProbeResult, ProbeTable, probe
from ssl_modal.core.export import encode, load_model
from ssl_modal.core.plots import plot_training_curves
from ssl_modal.core.trainer import Trainer, TrainResult
from ssl_modal.text.config import TextConfig
from ssl_modal.text.data import Corpus, read_corpus, tokenize_texts
from ssl_modal.text.model import build_text_model, text_model_config
from ssl_modal.text.tokenizer import TextTokenizer, build_tokenizer, load_tokenizer_path

Config = TextConfig
log = logging.getLogger("ssl_modal")


def read_split(cfg: TextConfig, which: str, labels: bool = False, max_examples: int | None = None) -> Corpus:
    """The train or test corpus of the recipe (`labels`: also read `data.label_column`)."""
    path = cfg.data.train_file if which == "train" else cfg.data.test_file
    if not path:
        raise ValueError(f"data.{which}_file is not set")
    return read_corpus(path, cfg.data.text_column, cfg.data.label_column if labels else None,
                       max_examples, cfg.data.on_empty)


def recipe_tokenizer(cfg: TextConfig, texts: list[str]) -> TextTokenizer:
    """The configured tokenizer. A trained vocabulary is saved to `<output_dir>/tokenizer.json` and
    reused when resuming (WordPiece training breaks frequency ties differently in each process)."""
    saved = Path(cfg.train.output_dir) / "tokenizer.json"
    if cfg.tokenizer.train_vocab_size and not cfg.tokenizer.vocab_file:
        if cfg.train.resume and saved.is_file():
            log.info("reusing the vocabulary trained earlier: %s", saved)
            return load_tokenizer_path(saved, max_length=cfg.model.max_length)
        tokenizer = build_tokenizer(cfg.tokenizer, cfg.model.max_length, texts)
        tokenizer.save(saved)
        return tokenizer
    return build_tokenizer(cfg.tokenizer, cfg.model.max_length, texts, cfg.model.pretrained_path)


def train(cfg: TextConfig) -> TrainResult:
    """Pretrain the MLM on `data.train_file`; the final model is `<train.output_dir>/model.pt`."""
    corpus = read_split(cfg, "train", max_examples=cfg.data.max_train_examples)
    log.info("%s", corpus.report())
    tokenizer = recipe_tokenizer(cfg, corpus.texts)
    torch.manual_seed(cfg.train.seed)
    model = build_text_model(text_model_config(cfg.model, cfg.mlm, tokenizer, cfg.data.text_column))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("text MLM: %s parameters, vocabulary %s, max_length %d",
             f"{n_params:,}", f"{tokenizer.vocab_size:,}", cfg.model.max_length)
    data = tokenize_texts(corpus.texts, tokenizer, word_ids=cfg.mlm.whole_word)
    return Trainer(cfg.train).fit(model, data, model.collate)


def tfidf_features(train_texts: list[str], test_texts: list[str]):
    """TF-IDF (word 1-2 grams, sublinear tf) fitted on the training texts only; rows: train then test."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    return sp.vstack([vectorizer.fit_transform(train_texts), vectorizer.transform(test_texts)]).tocsr()


def evaluate(cfg: TextConfig, model=None) -> ProbeTable:
    """Probe frozen embeddings (first `eval.probe_train_examples` training texts -> test file) for the
    labels; with `eval.baselines` also TF-IDF + logistic regression and a random-init encoder."""
    if not cfg.data.test_file or not cfg.data.label_column:
        raise ValueError("evaluation needs data.test_file and data.label_column")
    model = model if model is not None else load_model(cfg.train.output_dir)
    train_part = read_split(cfg, "train", labels=True, max_examples=cfg.eval.probe_train_examples)
    test_part = read_split(cfg, "test", labels=True)
    texts = train_part.texts + test_part.texts
    labels = np.asarray([str(y) for y in train_part.labels + test_part.labels])
    split = {"train_idx": np.arange(len(train_part)), "test_idx": np.arange(len(train_part), len(texts)),
             "k": cfg.eval.knn_k, "seed": cfg.train.seed}
    results: list[ProbeResult] = []
    if cfg.eval.baselines:
        results.append(probe(tfidf_features(train_part.texts, test_part.texts), labels, name="tf-idf + logreg", **split))
        torch.manual_seed(cfg.train.seed + 1)
        random_model = build_text_model(model.spec.config).to(next(model.parameters()).device)
        results.append(probe(encode(random_model, texts, cfg.eval.batch_size), labels,
                             name="random-init encoder", **split))
    results.append(probe(encode(model, texts, cfg.eval.batch_size), labels, name="mlm encoder", **split))
    return ProbeTable(results)


def plot_loss_curve(output_dir: str | Path, png_path: str | Path) -> Path:
    """MLM loss and masked-token accuracy against step, from the trainer's metrics.jsonl."""
    return plot_training_curves(output_dir, png_path, f"text MLM pretraining ({Path(output_dir).name})",
                                loss_label="MLM loss (cross-entropy)",
                                accuracies=[("mlm/accuracy", "masked-token accuracy")])
