"""Client-disjoint client probes (`data.task: probe`, `data.split: client`).

The clients are cut in two halves (`data.split_seed`). Fold 0: the encoder is pretrained on half A's
transactions and the probes are fitted on half A's clients; half B's clients are predicted. Fold 1: the
halves swapped (a second pretraining). Every client is predicted once, by an encoder and a probe that never
saw it; accuracy and macro one-vs-rest ROC-AUC are computed on all clients pooled. Rows: per-client
aggregates (the hand-made baseline), SSL client embeddings, random-init embeddings (same architecture, own
seed), and aggregates + each embedding; logistic regression on standardised features, and LightGBM.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ssl_modal.core.export import load_model
from ssl_modal.transactions.baselines import ResultTables, aggregate_features, lgbm_classifier
from ssl_modal.transactions.features import client_embeddings

log = logging.getLogger("ssl_modal")
KINDS = ("logreg", "LightGBM")


def table_labels(frame: pd.DataFrame, client: str, label: str) -> pd.Series:
    """Per-client label from a column of the transactions table; refuses a label that varies within a client."""
    if label not in frame.columns:
        raise KeyError(f"data.label_column '{label}' is not a column of the table; columns: {list(frame.columns)}")
    per = frame.groupby(frame[client].astype(str))[label]
    varying = per.nunique(dropna=False)
    if (varying > 1).any():
        bad = varying[varying > 1].index[0]
        raise ValueError(
            f"data.label_column '{label}': expected one value per client, found {int(varying[bad])} "
            f"values for client '{bad}'"
        )
    return per.first().astype(str)


def probe_model(kind: str, seed: int, n: int):
    """The client probe of `kind`: "logreg" (standardised, C = 0.1) or "LightGBM" (200 trees, sized for `n` rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    return lgbm_classifier(200, seed, n)


def _scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, roc_auc_score

    acc = float(accuracy_score(y, classes[proba.argmax(1)]))
    if len(classes) == 2:
        auc = float(roc_auc_score(y == classes[1], proba[:, 1]))
    else:
        auc = float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))
    return {"acc": acc, "roc_auc": auc}


def evaluate_probe_clients(
    cfg, model, fold1=None, label_columns: list[str] | None = None, kinds: tuple = KINDS
) -> ResultTables:
    """See the module docstring; `model` is fold 0's (pretrained on the first client half), `fold1` the
    model pretrained on the other half (None: pretrained here, into <train.output_dir>/fold1). `label_columns`:
    several per-client columns of the table probed with the same embeddings, one table each (default: the
    recipe's `data.label_column`). `kinds`: the probes, "logreg" and/or "LightGBM" (a 12-class LightGBM fit on
    800 clients x 170 features takes about a minute on one loaded core; logistic regression a second)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds: expected some of {list(KINDS)}, found {list(kinds)}")
    from ssl_modal.transactions.recipe import (
        _labels,
        preprocess_config,
        random_init_like,
        read_frame,
        train,
        train_rows,
    )

    columns = preprocess_config(cfg).columns
    frame = read_frame(cfg)
    if label_columns:
        labels = {c: table_labels(frame, columns.client_id, c) for c in label_columns}
    elif cfg.data.labels_file:
        labels = {cfg.data.label_column: _labels(cfg)}
    else:
        labels = {cfg.data.label_column: table_labels(frame, columns.client_id, cfg.data.label_column)}
    half = train_rows(frame, cfg, columns)
    side_a = set(frame[columns.client_id].astype(str)[half])
    agg = aggregate_features(frame, columns.client_id, columns.mcc, columns.amount, amount_format=columns.amount_format)
    embeddings = []  # per fold: (SSL, random-init) client embeddings, indexed by client id
    base_dir = cfg.train.output_dir
    for fold in (0, 1):
        if fold == 1 and fold1 is not None:
            model = fold1
        elif fold == 1:
            started = time.perf_counter()
            cfg.train.output_dir = f"{base_dir}/fold1"
            try:
                model = load_model(train(cfg, rows=~half).checkpoint)
            finally:
                cfg.train.output_dir = base_dir
            log.info("fold 1 pretraining: %.0f s", time.perf_counter() - started)
        sequences = model.preprocessor.transform(frame)  # shared by the random-init twin (same preprocessor)
        rnd_model = random_init_like(model, seed=1000 + cfg.train.seed * 2 + fold)
        embeddings.append(
            tuple(
                client_embeddings(
                    m, sequences, batch_size=cfg.eval.batch_size, pooling=cfg.eval.client_pooling
                ).set_index("client_id")
                for m in (model, rnd_model)
            )
        )
    table = ResultTables()
    table.data = {"rows": {}}
    for name, series in labels.items():
        _probe_label(table, cfg, name, series, agg, embeddings, side_a, kinds)
    return table


def _probe_label(table: ResultTables, cfg, name: str, labels: pd.Series, agg, embeddings, side_a: set, kinds) -> None:
    """One label's client-disjoint probe table (every row: both folds pooled) appended to `table`."""
    clients = [c for c in agg.index if c in labels.index]
    y = labels.loc[clients].to_numpy()
    classes = np.unique(y)
    in_a = np.array([c in side_a for c in clients])
    names = [
        "aggregates",
        "SSL embeddings",
        "random-init embeddings",
        "aggregates + SSL embeddings",
        "aggregates + random-init embeddings",
    ]
    proba = {(n, k): np.zeros((len(clients), len(classes))) for n in names for k in kinds}
    for fit, (emb, rnd) in zip((in_a, ~in_a), embeddings, strict=True):
        cols = [c for c in emb.columns if c.startswith("emb_")]
        e, r = emb.loc[clients, cols].to_numpy(), rnd.loc[clients, cols].to_numpy()
        a = agg.loc[clients].to_numpy()
        sets = dict(zip(names, (a, e, r, np.hstack([a, e]), np.hstack([a, r])), strict=True))
        for set_name, X in sets.items():
            for kind in kinds:
                clf = probe_model(kind, cfg.train.seed, int(fit.sum())).fit(X[fit], y[fit])
                p = clf.predict_proba(X[~fit])
                order = [list(clf.classes_).index(c) if c in clf.classes_ else None for c in classes]
                proba[(set_name, kind)][~fit] = np.stack(
                    [p[:, i] if i is not None else np.zeros(len(p)) for i in order], 1
                )
    rows = []
    for kind in kinds:
        for set_name in names:
            s = _scores(y, proba[(set_name, kind)], classes)
            rows.append([f"{set_name} + {kind}", s["acc"], s["roc_auc"]])
    majority = float(pd.Series(y).value_counts(normalize=True).iloc[0])
    table.add(
        f"client probe '{name}' ({len(classes)} classes, majority {majority:.3f}), "
        f"client-disjoint: {int(in_a.sum())} / {int((~in_a).sum())} clients, each half predicted by the "
        "encoder and probe of the other",
        ["features", "accuracy", "ROC-AUC (macro OvR)"],
        rows,
    )
    rows_data = {r[0]: {"acc": r[1], "roc_auc": r[2]} for r in rows}
    if len(table.sections) == 1:
        table.data["rows"] = rows_data  # the recipe's single label: as before
    table.data.setdefault("labels", {})[name] = rows_data
