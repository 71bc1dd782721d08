"""Recipe support for `domain: text`: pretraining (MLM, SimCSE, span crops; from scratch or continued from
a local model), then frozen-encoder probes against baselines.

Used by `recipes/text_mlm.py` and by `ssl-modal train|eval recipes/text_mlm.yaml`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ssl_modal.core.eval_data import EvalData
from ssl_modal.core.evaluate import ProbeResult, ProbeTable, probe
from ssl_modal.core.export import load_model
from ssl_modal.core.plots import plot_training_curves
from ssl_modal.core.trainer import Trainer, TrainResult
from ssl_modal.text.clusters import cluster_space, cluster_targets, prototypes
from ssl_modal.text.config import DataConfig, TextConfig
from ssl_modal.text.data import Corpus, read_corpus, tokenize_texts
from ssl_modal.text.features import embed_precision, encode_sorted
from ssl_modal.text.lexical import TARGET_KEY, lsa_targets
from ssl_modal.text.model import build_text_model, resolve_init_from, text_model_config
from ssl_modal.text.neighbours import agreed_neighbours, nearest_neighbours, neighbour_pairs, tfidf_vectors
from ssl_modal.text.packing import fill_ratio, pack_texts
from ssl_modal.text.tokenizer import TextTokenizer, build_tokenizer, load_tokenizer_path

Config = TextConfig
AGREED_POOL = 50  # objectives.neighbour_source: agreed intersects each source's 50 nearest neighbours
log = logging.getLogger("ssl_modal")


def split_data(cfg: TextConfig, which: str) -> DataConfig:
    """The data config of "train" (`data:`, what pretraining reads), "probe" (`eval.train`, default `data`:
    the probes learn on its first N texts) or "test" (`eval.test`: the probes are scored there)."""
    if which == "train":
        return cfg.data
    probe_data, test_data = EvalData(train=cfg.eval.train, test=cfg.eval.test).resolve(cfg.data)
    if which == "probe":
        return probe_data
    if test_data is None:
        raise ValueError("evaluation needs labelled test texts: set eval.test, e.g. eval: {test: {file: test.csv}}")
    return test_data


def read_split(cfg: TextConfig, which: str, labels: bool = False, max_examples: int | None = None) -> Corpus:
    """The corpus of `split_data(cfg, which)` (`labels`: also read its `label_column`)."""
    data = split_data(cfg, which)
    where = {"train": "data", "probe": "eval.train" if cfg.eval.train is not None else "data", "test": "eval.test"}
    if not data.file:
        raise ValueError(f"{where[which]}.file is not set")
    if labels and not data.label_column:
        raise ValueError(f"{where[which]}.label_column is not set: the probes need labels")
    return read_corpus(data.file, data.text_column, data.label_column if labels else None, max_examples, data.on_empty)


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
    init_from = resolve_init_from(cfg.model.init_from) if cfg.model.init_from else None
    return build_tokenizer(cfg.tokenizer, cfg.model.max_length, texts, init_from)


def recipe_model_config(cfg: TextConfig, tokenizer: TextTokenizer) -> dict:
    return text_model_config(cfg.model, cfg.mlm, tokenizer, cfg.data.text_column, cfg.objectives)


def train(cfg: TextConfig) -> TrainResult:
    """Pretrain on `data.file`; the final model is `<train.output_dir>/model.pt`."""
    corpus = read_split(cfg, "train", max_examples=cfg.data.max_train_examples)
    log.info("%s", corpus.report())
    tokenizer = recipe_tokenizer(cfg, corpus.texts)
    torch.manual_seed(cfg.train.seed)
    model = build_text_model(recipe_model_config(cfg, tokenizer))
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "text model: %s parameters, vocabulary %s, max_length %d, objectives %s",
        f"{n_params:,}",
        f"{tokenizer.vocab_size:,}",
        cfg.model.max_length,
        model.weights,
    )
    if cfg.data.pack and cfg.mlm.whole_word:
        raise ValueError("data.pack: true does not support mlm.whole_word: true; set one of them off")
    if cfg.data.max_tokens and cfg.data.max_tokens < cfg.model.max_length:
        tokens = TextTokenizer.from_config(tokenizer.to_config(), cfg.data.max_tokens)
    else:
        tokens = tokenizer
    data = tokenize_texts(corpus.texts, tokens, word_ids=cfg.mlm.whole_word)
    if cfg.objectives.lexical:
        if cfg.data.pack:
            raise ValueError("objectives.lexical needs one text per row: set data.pack: false")
        log.info("lexical targets: LSA (%d dims) of the TF-IDF of %s texts", cfg.objectives.lexical_dims, len(data))
        targets = lsa_targets(corpus.texts, cfg.objectives.lexical_dims, cfg.train.seed)
        data = data.add_column(TARGET_KEY, list(targets))
    if cfg.objectives.neighbour or cfg.objectives.cluster:
        if cfg.data.pack:
            raise ValueError("objectives.neighbour and objectives.cluster need one text per row: set data.pack: false")
        data = mine_partners(cfg, model, corpus.texts, data)
    if cfg.data.pack:
        rows = pack_texts(data["input_ids"], data["special_tokens_mask"], cfg.model.max_length, cfg.train.seed)
        log.info(
            "packed %s texts into %s rows of %d tokens (%.1f %% real tokens)",
            f"{len(data):,}",
            f"{len(rows):,}",
            cfg.model.max_length,
            100 * fill_ratio(rows, cfg.model.max_length),
        )
        data = rows
    return Trainer(cfg.train).fit(model, data, model.collate)


def start_embeddings(cfg: TextConfig, model, texts: list[str]) -> np.ndarray:
    """`texts` embedded by `model` as it starts (model.max_length; `eval.cache_features` keeps them, so a
    resumed run mines the same partners and clusters without embedding again)."""
    if not cfg.model.init_from:
        log.warning(
            "objectives.neighbour / cluster mine with the starting model, a random init here: its neighbours mean "
            "little; objectives.neighbour_source: tfidf mines from the corpus instead"
        )
    cache = Path(cfg.train.output_dir) / "features" if cfg.eval.cache_features else None
    log.info("neighbour mining: embedding %s texts with the starting model", f"{len(texts):,}")
    precision = embed_precision(cfg.eval.autocast, model)
    return encode_sorted(model, texts, cfg.eval.batch_size, cache, "starting model (neighbour mining)", precision)


def add_clusters(cfg: TextConfig, model, texts: list[str], data, embeddings: np.ndarray):
    """`data` with `cluster_labels`: k-means ids of the pretraining texts (`ssl_modal.text.clusters`); the
    model's cluster head starts at the clusters' mean embeddings."""
    o = cfg.objectives
    vectors = cluster_space(embeddings, texts, o.cluster_features, cfg.train.seed)
    targets = cluster_targets(vectors, o.cluster_k, cfg.train.seed)
    sizes = np.bincount(targets, minlength=o.cluster_k)
    log.info("k-means on %s (%s texts): %d clusters, sizes %d-%d", o.cluster_features, f"{len(texts):,}",
             o.cluster_k, sizes.min(), sizes.max())  # fmt: skip
    model.objectives["cluster"].set_prototypes(prototypes(embeddings, targets, o.cluster_k))
    return data.add_column("cluster_labels", targets.tolist())


def mine_partners(cfg: TextConfig, model, texts: list[str], data):
    """`data` with what the objectives need before step 1: `objectives.cluster`'s k-means targets, and each
    text's partner for `objectives.neighbour` (or cluster_mode scan): one of its `neighbour_k` nearest
    neighbours under `model` as it starts, or, with `objectives.neighbour_source: tfidf`, under TF-IDF vectors
    of `texts` (no model needed)."""
    o = cfg.objectives
    embeddings = start_embeddings(cfg, model, texts) if o.cluster or o.neighbour_source != "tfidf" else None
    if o.cluster and embeddings is not None:
        data = add_clusters(cfg, model, texts, data, embeddings)
    if not (o.neighbour or (o.cluster and o.cluster_mode == "scan")):
        return data
    if o.neighbour_source == "tfidf":
        log.info("neighbour mining: TF-IDF vectors of %s texts", f"{len(texts):,}")
        vectors = tfidf_vectors(texts)
        log.info(
            "TF-IDF: %s terms; %d texts have no term", f"{vectors.shape[1]:,}", int((vectors.getnnz(1) == 0).sum())
        )
        return neighbour_pairs(data, vectors, o.neighbour_k, cfg.train.seed, o.neighbour_draws)
    if o.neighbour_source == "agreed":  # the model's and TF-IDF's top AGREED_POOL lists, intersected by rank
        pool = min(AGREED_POOL, len(texts) - 1)
        lists = agreed_neighbours(
            nearest_neighbours(embeddings, pool), nearest_neighbours(tfidf_vectors(texts), pool), o.neighbour_k
        )
        return neighbour_pairs(data, lists, o.neighbour_k, cfg.train.seed, o.neighbour_draws, neighbours_given=True)
    return neighbour_pairs(data, embeddings, o.neighbour_k, cfg.train.seed, o.neighbour_draws)


def tfidf_features(train_texts: list[str], test_texts: list[str]):
    """TF-IDF (word 1-2 grams, sublinear tf) fitted on the training texts only; rows: train then test."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    return sp.vstack([vectorizer.fit_transform(train_texts), vectorizer.transform(test_texts)]).tocsr()


def probe_sizes(cfg: TextConfig, n_train: int) -> list[int]:
    """Training-set sizes of the probes: eval.probe_train_examples, then eval.label_efficiency (null: all)."""
    sizes = [n_train if n is None else min(n, n_train) for n in cfg.eval.probe_train_examples]
    return list(dict.fromkeys(sizes + [min(n, n_train) for n in cfg.eval.label_efficiency]))


def feature_rows(cfg: TextConfig, model) -> list[tuple[str, object]]:
    """(name, SSLModel) of the encoders to probe: random init, the frozen start model, the trained one."""
    device = next(model.parameters()).device
    rows = []
    if cfg.eval.baselines:
        torch.manual_seed(cfg.train.seed + 1)
        rows.append(("random-init encoder", build_text_model(model.spec.config).to(device)))
    init_from = model.spec.config["model"].get("init_from")
    if init_from and cfg.eval.init_baseline:
        start = build_text_model({**model.spec.config, "hf_config": None}).to(device)
        rows.append((f"frozen {Path(init_from).name} (start)", start))
    rows.append(("pretrained encoder" if not init_from else "continued-pretrained encoder", model))
    return rows


def evaluate(cfg: TextConfig, model=None) -> ProbeTable:
    """Probe frozen embeddings for the labels: a probe fitted on the first N texts of `eval.train` (default:
    `data`) for each N of `eval.probe_train_examples` and `eval.label_efficiency`, scored on `eval.test`; with
    `eval.baselines` also TF-IDF + logistic regression and a random-init encoder, and the frozen
    `model.init_from`. Each encoder embeds the texts once (`eval.cache_features`: kept across runs)."""
    test_part = read_split(cfg, "test", labels=True)
    full = read_split(cfg, "probe", labels=True)
    model = model if model is not None else load_model(cfg.train.output_dir)
    sizes = probe_sizes(cfg, len(full))
    n_probe = max(sizes)
    train_texts, train_labels = full.texts[:n_probe], full.labels[:n_probe]
    texts = train_texts + test_part.texts
    labels = np.asarray([str(y) for y in train_labels + test_part.labels])
    test_idx = np.arange(n_probe, len(texts))
    features: list[tuple[str, object]] = []
    encoders = feature_rows(cfg, model)
    for name, encoder in encoders:
        log.info("embedding %s texts with the %s", f"{len(texts):,}", name)
        cache = Path(cfg.train.output_dir) / "features" if cfg.eval.cache_features else None
        precision = embed_precision(cfg.eval.autocast, encoder)
        embed = [
            encode_sorted(encoder, part, cfg.eval.batch_size, cache, name, precision)
            for part in (train_texts, test_part.texts)
        ]
        features.append((name, np.concatenate(embed)))  # training texts alone: they share the mining's windows
    results: list[ProbeResult] = []
    for n in sizes:
        split = {
            "train_idx": np.arange(n),
            "test_idx": test_idx,
            "k": cfg.eval.knn_k,
            "seed": cfg.train.seed,
            "C": cfg.eval.probe_c,
        }
        if cfg.eval.baselines:
            results.append(
                probe(
                    tfidf_features(train_texts[:n], test_part.texts),
                    labels[np.r_[:n, test_idx]],
                    name="tf-idf + logreg",
                    train_idx=np.arange(n),
                    test_idx=np.arange(n, n + len(test_idx)),
                    k=cfg.eval.knn_k,
                    seed=cfg.train.seed,
                    C=cfg.eval.probe_c,
                )
            )
        for name, X in features:
            results.append(probe(X, labels, name=name, **split))
    if cfg.eval.finetune_steps > 0:  # every encoder of the table (random init, start, trained), fine-tuned
        for name, encoder in encoders:
            results.append(finetune_row(cfg, encoder, full, test_part, f"{name.removeprefix('frozen ')}, fine-tuned"))
    return ProbeTable(results)


def finetune_row(cfg: TextConfig, model, full: Corpus, test_part: Corpus, name: str) -> ProbeResult:
    """`model`'s encoder fine-tuned with a linear head (`ssl_modal.core.finetune`, on a copy) on the first
    `eval.finetune_examples` texts of `eval.train` (default `data`), scored on `eval.test`."""
    from ssl_modal.core.finetune import finetune

    n = len(full) if cfg.eval.finetune_examples is None else min(cfg.eval.finetune_examples, len(full))
    log.info("fine-tuning on %s texts for at most %d steps", f"{n:,}", cfg.eval.finetune_steps)
    return finetune(
        model,
        full.texts[:n],
        [str(y) for y in full.labels[:n]],
        model.collate,
        test_examples=test_part.texts,
        test_labels=[str(y) for y in test_part.labels],
        max_steps=cfg.eval.finetune_steps,
        batch_size=cfg.train.batch_size if not cfg.data.pack else 32,
        learning_rate=cfg.eval.finetune_learning_rate,
        seed=cfg.train.seed,
        k=cfg.eval.knn_k,
        name=name,
    )


def plot_loss_curve(output_dir: str | Path, png_path: str | Path) -> Path:
    """MLM loss and masked-token accuracy against step, from the trainer's metrics.jsonl."""
    return plot_training_curves(
        output_dir,
        png_path,
        f"text MLM pretraining ({Path(output_dir).name})",
        loss_label="MLM loss (cross-entropy)",
        accuracies=[("mlm/accuracy", "masked-token accuracy")],
    )
