"""Client-disjoint fraud evaluation (`data.split: client`): nothing is scored by a model that saw its client.

The clients are cut in two halves (`data.split_seed`). Fold 0: the encoder is pretrained on half A and
LightGBM is fitted on half A; half B is scored. Fold 1: the same with the halves swapped (a second
pretraining). Every row is scored once, out of fold, and AUC-PR / ROC-AUC are computed on all rows pooled.
Rows: raw columns; raw + hand-made velocity; raw + SSL; raw + random-init features (same architecture and
heads, its own seed); raw + velocity + SSL; SSL alone; and label-free scores (no labels, no fitting): the
documented `anomaly_score_24h` and the per-event `anomaly_score`, the raw amount and single candidates.
Every row's LightGBM follows one protocol (`lgbm_fit.py`, the recipe's `eval.lgbm_*`): its rounds early-stopped
on held-out clients of the fold's training half only. When fold 1 is pretrained here with `threads: 1`, fold
0's fits run on one LightGBM thread beside that pretraining (the second core is otherwise idle).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd

from ssl_modal.core.export import load_model
from ssl_modal.transactions.baselines import (
    ResultTables,
    fraud_scores,
    numeric_amount,
    velocity_features,
)
from ssl_modal.transactions.features import features
from ssl_modal.transactions.lgbm_fit import LgbmProtocol, fit_predict

log = logging.getLogger("ssl_modal")
LABEL_FREE = (
    "anomaly_score_24h",
    "anomaly_score",
    "event_nll_l1",
    "amount_nll_l1",
    "amount_z_l1",
    "surprise_total",
    "surprise_mcc",
    "history_distance",
)


def lgbm_protocol(cfg) -> LgbmProtocol:
    """The recipe's LightGBM protocol (`eval.lgbm_*`), the same for every row of the table."""
    e = cfg.eval
    return LgbmProtocol(
        learning_rates=[float(r) for r in e.lgbm_learning_rates],
        max_rounds=e.lgbm_rounds,
        valid_fraction=e.lgbm_valid_fraction,
        patience=e.lgbm_patience,
        refit=e.lgbm_refit,
        n_jobs=e.lgbm_threads,
    )


def _rounds(infos) -> str:
    if not infos:
        return "--"
    lrs = {i["learning_rate"] for i in infos}
    return " / ".join(str(i["rounds"]) for i in infos) + (f" at lr {lrs.pop():g}" if len(lrs) == 1 else "")


def velocity_table(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """The hand-made velocity features (`baselines.velocity_features`) of the mapped columns, times in seconds
    whatever the time column's resolution."""
    from ssl_modal.transactions.recipe import event_times

    times = event_times(frame, columns)
    seconds = (  # through datetime64[ns]: a column read as datetime64[us] (Parquet) gives microseconds as int64
        times.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
        if pd.api.types.is_datetime64_any_dtype(times)
        else times.to_numpy(dtype=np.float64) * 86400.0
    )
    return velocity_features(
        frame[columns.client_id].to_numpy(), seconds, numeric_amount(frame[columns.amount], columns.amount_format)
    )


def evaluate_fraud_clients(cfg, model, fold1=None) -> ResultTables:
    """See the module docstring; `model` is fold 0's (pretrained on the first client half), `fold1` the
    model pretrained on the other half (None: pretrained here, into <train.output_dir>/fold1)."""
    from ssl_modal.transactions.recipe import (
        SSL_FEATURES,
        fraud_labels,
        preprocess_config,
        random_init_like,
        raw_features,
        read_frame,
        train,
        train_rows,
    )

    columns = preprocess_config(cfg).columns
    frame = read_frame(cfg)
    y = fraud_labels(frame, cfg)
    half = train_rows(frame, cfg, columns)
    raw = raw_features(frame, cfg, columns)
    vel = velocity_table(frame, columns)
    cats = ["code"] + list(cfg.eval.categorical_raw)
    sets = {
        "raw columns": lambda f, r: raw,
        "raw + velocity (hand-made)": lambda f, r: pd.concat([raw, vel], axis=1),
        "raw + SSL features": lambda f, r: pd.concat([raw, f], axis=1),
        "raw + random-init features": lambda f, r: pd.concat([raw, r], axis=1),
        "raw + velocity + SSL features": lambda f, r: pd.concat([raw, vel, f], axis=1),
        "raw + velocity + random-init features": lambda f, r: pd.concat([raw, vel, r], axis=1),
        "SSL features alone": lambda f, r: f,
    }
    oof = {name: np.full(len(frame), np.nan) for name in sets}
    fits = {name: [None, None] for name in sets}  # per fold: the learning rate and rounds chosen on its clients
    protocol, clients = lgbm_protocol(cfg), frame[columns.client_id].to_numpy()

    def fit_rows(fold, fit, ssl, rnd, protocol) -> None:
        started = time.perf_counter()
        for name, make in sets.items():
            oof[name][~fit], fits[name][fold] = fit_predict(
                make(ssl, rnd), y, fit, clients, protocol, cfg.train.seed, cats
            )
        log.info("fold %d: %d LightGBM fits in %.0f s", fold, len(sets), time.perf_counter() - started)

    # fold 1 pretrained here on one torch thread leaves a core idle: fold 0's fits run beside it on one thread
    overlap = fold1 is None and cfg.threads == 1 and protocol.n_jobs >= 2 and (os.cpu_count() or 1) >= 2
    pool, pending = ThreadPoolExecutor(max_workers=1), None
    free = {}
    all_feats = []
    base_dir = cfg.train.output_dir
    for fold, fit in enumerate((half, ~half)):
        if fold == 1 and fold1 is not None:
            model = fold1
        elif fold == 1:
            started = time.perf_counter()
            cfg.train.output_dir = f"{base_dir}/fold1"
            try:
                model = load_model(train(cfg, rows=fit).checkpoint)
            finally:
                cfg.train.output_dir = base_dir
            log.info("fold 1 pretraining: %.0f s", time.perf_counter() - started)
        kw = {"batch_size": cfg.eval.batch_size, "passes": cfg.eval.passes, "progress": False}
        kw["sequences"] = model.preprocessor.transform(frame)  # shared by the random-init twin (same preprocessor)
        feats = features(model, frame, **kw)
        ssl = feats[[c for c in feats.columns if c.startswith(SSL_FEATURES)]].reset_index(drop=True)
        rnd = features(random_init_like(model, seed=1000 + cfg.train.seed * 2 + fold), frame, **kw)
        rnd = rnd[ssl.columns].reset_index(drop=True).add_prefix("rnd_")
        if fold == 0 and overlap:
            pending = pool.submit(fit_rows, 0, fit, ssl, rnd, replace(protocol, n_jobs=1))
        else:
            if pending is not None:
                pending.result()  # fold 0's fits done (and their errors raised) before fold 1's take both cores
            fit_rows(fold, fit, ssl, rnd, protocol)
        for col in LABEL_FREE:
            if col in ssl:
                free.setdefault(col, np.full(len(frame), np.nan))[~fit] = ssl[col].fillna(0).to_numpy()[~fit]
        all_feats.append(feats.assign(fold=fold)[~fit])
    pool.shutdown()
    free["raw amount"] = raw["amount"].to_numpy()
    rows = [[name, fraud_scores(y, p)] for name, p in oof.items()]
    rows += [[f"{name} as the score (no labels)", fraud_scores(y, s)] for name, s in free.items()]
    table = ResultTables()
    n_a = int(frame.loc[half, columns.client_id].nunique())
    n_b = int(frame.loc[~half, columns.client_id].nunique())
    table.add(
        f"fraud, client-disjoint: halves of {n_a} / {n_b} clients, each scored by the encoder and LightGBM "
        f"of the other half; {len(frame)} rows ({int(y.sum())} fraud) pooled",
        ["model", "AUC-PR", "ROC-AUC", "LightGBM rounds (fold 0 / 1)"],
        [[name, r["auc_pr"], r["roc_auc"], _rounds(fits.get(name))] for name, r in rows],
    )
    table.data = {
        "rows": dict((name, r) for name, r in rows),
        "lgbm": fits,
        "features": pd.concat(all_feats).sort_index(),
    }
    return table
