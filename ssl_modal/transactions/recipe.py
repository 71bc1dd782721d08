"""Recipe support for `domain: transactions`: pretrain on a table, then evaluate per `data.task`.

- probe (age sample): frozen client embeddings vs per-client aggregates (logreg, LightGBM) and a
  random-init encoder;
- fraud (Sparkov, TabFormer): time split; LightGBM on raw columns vs raw + SSL features vs SSL alone;
- export (Berka): client embeddings and code embeddings (encoder + skip-gram) to Parquet.
Used by `recipes/transactions_*.py` and `ssl-modal train|eval recipes/transactions_*.yaml`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_modal.core.config import from_dict
from ssl_modal.core.evaluate import ProbeTable, probe
from ssl_modal.core.export import load_model
from ssl_modal.core.monitors import training_records
from ssl_modal.core.plots import plot_training_curves
from ssl_modal.core.trainer import Trainer, TrainResult
from ssl_modal.transactions.baselines import (
    ResultTables,
    aggregate_features,
    fraud_scores,
    lgbm_cv,
    lgbm_fraud,
    numeric_amount,
)
from ssl_modal.transactions.config import TransactionsConfig
from ssl_modal.transactions.features import client_embeddings, features
from ssl_modal.transactions.model import build_transactions_model, transactions_model_config

Config = TransactionsConfig
log = logging.getLogger("ssl_modal")
# the learned scores given to LightGBM; "position"/"window_events" describe the windowing, not the client, and
# drift between time periods (on Sparkov they cut AUC-PR from 0.87 to 0.67), so they stay out; "order_score"
# reads the event's whole window, up to 255 LATER events included (a look-ahead no transaction-time scorer has,
# and `score_new` does not produce it): out since issue 19's session 4 (docs/transactions.md)
SSL_FEATURES = (
    "surprise_",
    "gap_residual",
    "history_distance",
    "state_",
    "amount_z_",
    "gap_z_",
    "amount_nll_",
    "gap_nll_",
    "hour_nll_",
    "event_nll_",
    "anomaly_score",
)


def preprocess_config(cfg: TransactionsConfig):
    """T-data's PreprocessConfig from the recipe's `columns:` and `preprocess:` sections."""
    from ssl_modal.transactions.mapping import ColumnMapping
    from ssl_modal.transactions.preprocess import PreprocessConfig

    columns = from_dict(ColumnMapping, cfg.columns, "columns")
    return from_dict(PreprocessConfig, {**cfg.preprocess, "columns": columns}, "preprocess")


def read_frame(cfg: TransactionsConfig) -> pd.DataFrame:
    from ssl_modal.data.readers import read_table

    if not cfg.data.table:
        raise ValueError("data.table is not set: give the transactions CSV/Parquet file")
    frame = read_table(cfg.data.table)
    return frame.iloc[: cfg.data.max_rows].reset_index(drop=True) if cfg.data.max_rows else frame


def event_times(frame: pd.DataFrame, columns) -> pd.Series:
    """The mapped event time as datetimes (or floats for time_format "days")."""
    if isinstance(columns.event_time, list):  # several columns joined with spaces (TabFormer)
        values = frame[columns.event_time].astype(str).agg(" ".join, axis=1)
    else:
        values = frame[columns.event_time]
    if (
        columns.time_format in ("days", "seconds")
        or pd.api.types.is_numeric_dtype(values)
        and columns.time_format is None
    ):
        return pd.to_numeric(values, errors="coerce")
    return pd.to_datetime(values, format=columns.time_format, errors="coerce")


def client_half(frame: pd.DataFrame, column: str, seed: int) -> np.ndarray:
    """Bool per row: True for the rows of a random half of the clients (drawn with `seed`), every client
    kept whole (also clients with a single event or only fraud rows)."""
    ids = frame[column].astype(str).to_numpy()
    clients = np.unique(ids)
    chosen = np.random.default_rng(seed).permutation(len(clients))[: len(clients) // 2]
    return np.isin(ids, clients[chosen])


def train_rows(frame: pd.DataFrame, cfg: TransactionsConfig, columns) -> np.ndarray:
    """Bool per row: True where the row belongs to the pretraining / fitting period (split "client": the
    first client half)."""
    if cfg.data.split == "client" and cfg.data.task in ("fraud", "probe"):
        return client_half(frame, columns.client_id, cfg.data.split_seed)
    if cfg.data.task != "fraud":
        return np.ones(len(frame), dtype=bool)
    if not cfg.data.split_time:
        raise ValueError("data.task 'fraud' needs data.split_time (rows before it train, the rest test)")
    times = event_times(frame, columns)
    split = float(cfg.data.split_time) if pd.api.types.is_numeric_dtype(times) else pd.Timestamp(cfg.data.split_time)
    mask = (times < split).to_numpy()
    if not mask.any() or mask.all():
        raise ValueError(
            f"data.split_time {cfg.data.split_time}: {int(mask.sum())} of {len(mask)} rows fall before "
            "it; both sides of the split need rows"
        )
    return mask


def train(cfg: TransactionsConfig, rows: np.ndarray | None = None) -> TrainResult:
    """Fit the preprocessing and pretrain on the table (fraud: on the rows before data.split_time only, or
    the first client half; `rows` (bool per row) overrides the choice)."""
    if cfg.data.shards:  # windows written by `ssl-modal preprocess`, streamed from Parquet shards
        from ssl_modal.transactions.shards import train_from_shards

        return train_from_shards(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    pcfg = preprocess_config(cfg)
    frame = read_frame(cfg)
    frame = frame[train_rows(frame, cfg, pcfg.columns) if rows is None else rows]
    from ssl_modal.transactions.preprocess import TransactionPreprocessor

    pre = TransactionPreprocessor(pcfg)
    sequences = pre.fit_transform(frame)
    log.info("preprocessing report: %s", sequences.report)
    torch.manual_seed(cfg.train.seed)
    model = build_transactions_model(
        transactions_model_config(pre, cfg.encoder, cfg.objectives, sequences, client_pooling=cfg.eval.client_pooling)
    )
    log.info(
        "transactions model: %s parameters, %d windows, fields %s",
        f"{sum(p.numel() for p in model.parameters()):,}",
        len(sequences),
        list(pre.fields),
    )
    return Trainer(cfg.train).fit(model, sequences, model.collate)


def random_init_like(model, seed: int = 12345):
    """The same architecture, heads and fitted preprocessing as `model`, at random init (seeded)."""
    from ssl_modal.transactions.model import random_init

    return random_init(model, seed)


def _labels(cfg: TransactionsConfig) -> pd.Series:
    from ssl_modal.data.readers import read_table

    if not cfg.data.labels_file or not cfg.data.label_column:
        raise ValueError("data.task 'probe' needs data.labels_file and data.label_column")
    table = read_table(cfg.data.labels_file)
    for col in (cfg.data.label_client_column, cfg.data.label_column):
        if col not in table.columns:
            raise KeyError(f"{cfg.data.labels_file}: no column '{col}'; columns: {list(table.columns)}")
    return table.set_index(table[cfg.data.label_client_column].astype(str))[cfg.data.label_column]


def evaluate_probe(cfg: TransactionsConfig, model) -> ProbeReport:
    """Client-level probe with baselines (stratified CV over clients; split "client": see client_eval.py)."""
    if cfg.data.split == "client":
        from ssl_modal.transactions.client_eval import evaluate_probe_clients

        return evaluate_probe_clients(cfg, model)
    columns = preprocess_config(cfg).columns
    frame = read_frame(cfg)
    labels = _labels(cfg)
    emb = client_embeddings(model, frame, batch_size=cfg.eval.batch_size, pooling=cfg.eval.client_pooling)
    emb = emb.set_index(emb.pop("client_id").astype(str))  # the labels' ids are text: integer ids match too
    clients = [c for c in emb.index if c in labels.index]
    if len(clients) < len(emb):
        log.warning("probe: %d of %d clients have no label and are left out", len(emb) - len(clients), len(emb))
    y = labels.loc[clients].astype(str).to_numpy()
    emb_cols = [c for c in emb.columns if c.startswith("emb_")]
    kw = {"cv": cfg.eval.cv, "k": cfg.eval.knn_k, "seed": cfg.train.seed}
    results = ProbeTable()
    lgbm = ResultTables()
    rows = []
    if cfg.eval.baselines:
        agg = (
            aggregate_features(
                frame, columns.client_id, columns.mcc, columns.amount, amount_format=columns.amount_format
            )
            .reindex(clients)
            .fillna(0.0)
        )
        results.append(probe(agg.to_numpy(), y, name="aggregates + logreg", **kw))
        rnd = client_embeddings(random_init_like(model), frame, pooling=cfg.eval.client_pooling)
        rnd = rnd.set_index(rnd.pop("client_id").astype(str)).loc[clients, emb_cols]
        results.append(probe(rnd.to_numpy(), y, name="random-init encoder", **kw))
        rows.append(
            [
                "aggregates + LightGBM",
                *_cv_cells(lgbm_cv(agg.to_numpy(), y, cfg.eval.cv, cfg.train.seed, cfg.eval.lgbm_rounds)),
            ]
        )
    ssl = emb.loc[clients, emb_cols].to_numpy()
    results.append(probe(ssl, y, name="SSL encoder", **kw))
    rows.append(
        ["SSL embeddings + LightGBM", *_cv_cells(lgbm_cv(ssl, y, cfg.eval.cv, cfg.train.seed, cfg.eval.lgbm_rounds))]
    )
    lgbm.add(f"LightGBM ({cfg.eval.cv}-fold CV over {len(y)} clients)", ["features", "acc", "macro F1"], rows)
    return ProbeReport(results, lgbm)


def _cv_cells(r: dict) -> list[str]:
    return [f"{r['acc']:.3f} ± {r['acc_std']:.3f}", f"{r['f1']:.3f} ± {r['f1_std']:.3f}"]


class ProbeReport:
    """ProbeTable (linear / kNN) plus the LightGBM table; str() prints both."""

    def __init__(self, probes: ProbeTable, lgbm: ResultTables):
        self.probes, self.lgbm = probes, lgbm

    def __str__(self) -> str:
        return f"{self.probes}\n\n{self.lgbm}"

    def to_markdown(self) -> str:
        return f"{self.probes.to_markdown()}\n\n{self.lgbm.to_markdown()}"


def raw_features(frame: pd.DataFrame, cfg: TransactionsConfig, columns) -> pd.DataFrame:
    """The raw-column baseline: amount, hour and weekday of the event time, plus `eval.raw_features`."""
    out = pd.DataFrame({"amount": numeric_amount(frame[columns.amount], columns.amount_format)})
    times = event_times(frame, columns)
    if pd.api.types.is_datetime64_any_dtype(times):
        out["hour"], out["weekday"] = times.dt.hour.to_numpy(), times.dt.day_of_week.to_numpy()
    out["code"] = frame[columns.mcc].astype(str).to_numpy()
    for c in cfg.eval.raw_features:
        if c not in frame.columns:
            raise KeyError(f"eval.raw_features: no column '{c}' in {cfg.data.table}; columns: {list(frame.columns)}")
        out[c] = frame[c].astype(str).to_numpy() if c in cfg.eval.categorical_raw else numeric_amount(frame[c])
    return out


def fraud_labels(frame: pd.DataFrame, cfg: TransactionsConfig) -> np.ndarray:
    col = cfg.data.label_column
    if not col or col not in frame.columns:
        raise KeyError(f"data.label_column '{col}' is not a column of {cfg.data.table}; columns: {list(frame.columns)}")
    values = frame[col]
    if cfg.data.positive_label is not None:
        return (values.astype(str) == str(cfg.data.positive_label)).to_numpy().astype(int)
    return (pd.to_numeric(values, errors="coerce").fillna(0) != 0).to_numpy().astype(int)


def evaluate_fraud(cfg: TransactionsConfig, model) -> ResultTables:
    """LightGBM on raw columns vs raw + SSL features vs SSL alone (+ a random-init model's features),
    fitted on the rows before data.split_time and scored on the rows after it."""
    if cfg.data.split == "client":
        from ssl_modal.transactions.fraud_eval import evaluate_fraud_clients

        return evaluate_fraud_clients(cfg, model)
    columns = preprocess_config(cfg).columns
    frame = read_frame(cfg)
    y, train = fraud_labels(frame, cfg), train_rows(frame, cfg, columns)
    raw = raw_features(frame, cfg, columns)
    cats = ["code"] + list(cfg.eval.categorical_raw)
    feats = features(model, frame, batch_size=cfg.eval.batch_size, passes=cfg.eval.passes)
    ssl = feats[[c for c in feats.columns if c.startswith(SSL_FEATURES)]].reset_index(drop=True)
    fit = lambda X: lgbm_fraud(X, y, train, cfg.eval.lgbm_rounds, cfg.train.seed, cats)  # noqa: E731
    rows = [
        ["raw columns", fit(raw)],
        ["raw + SSL features", fit(pd.concat([raw, ssl], axis=1))],
        ["SSL features alone", fit(ssl)],
    ]
    if cfg.eval.baselines:
        rnd = features(
            random_init_like(model), frame, batch_size=cfg.eval.batch_size, passes=cfg.eval.passes, progress=False
        )
        rnd = rnd[ssl.columns].reset_index(drop=True).add_prefix("rnd_")
        rows.append(["raw + random-init features", fit(pd.concat([raw, rnd], axis=1))])
    free = ("anomaly_score_24h", "anomaly_score", "surprise_total", "surprise_mcc", "order_score", "history_distance")
    for col in free:
        if col in ssl:
            rows.append(
                [f"{col} as the score (no labels)", fraud_scores(y[~train], ssl[col].fillna(0).to_numpy()[~train])]
            )
    table = ResultTables()
    n_test, pos = int((~train).sum()), int(y[~train].sum())
    table.add(
        f"fraud, time split at {cfg.data.split_time}: train {int(train.sum())} rows ({int(y[train].sum())} fraud), "
        f"test {n_test} rows ({pos} fraud)",
        ["model", "AUC-PR", "ROC-AUC"],
        [[name, r["auc_pr"], r["roc_auc"]] for name, r in rows],
    )
    table.data = {"rows": {name: r for name, r in rows}, "features": feats}
    return table


def evaluate_export(cfg: TransactionsConfig, model) -> ResultTables:
    """Client embeddings of the whole table and a nearest-neighbour table per embedded code field."""
    from ssl_modal.transactions.mcc import mcc_embeddings, nearest_mccs

    frame = read_frame(cfg)
    emb = client_embeddings(model, frame, batch_size=cfg.eval.batch_size, pooling=cfg.eval.client_pooling)
    table = ResultTables()
    table.add(
        "client embeddings",
        ["clients", "windows", "events", "dim"],
        [[len(emb), int(emb["windows"].sum()), int(emb["events"].sum()), sum(c.startswith("emb_") for c in emb)]],
    )
    for field in cfg.eval.embedding_fields:
        codes = mcc_embeddings(model, field)
        rows = [
            [
                str(c),
                int(n),
                ", ".join(
                    f"{a} ({s:.2f})" for a, s in nearest_mccs(codes, c, 3, field)[["code", "similarity"]].to_numpy()
                ),
            ]
            for c, n in codes[["code", "count"]].head(8).to_numpy()
        ]
        table.add(
            f"'{field}' embeddings: nearest neighbours of the most frequent codes", ["code", "count", "nearest"], rows
        )
    table.data = {"clients": emb}
    return table


def evaluate(cfg: TransactionsConfig, model=None):
    """The task's evaluation of the trained model (default: `<train.output_dir>/model.pt`)."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    model = model if model is not None else load_model(cfg.train.output_dir)
    task = {"probe": evaluate_probe, "fraud": evaluate_fraud, "export": evaluate_export}[cfg.data.task]
    return task(cfg, model)


def plot_loss_curve(output_dir: str | Path, png_path: str | Path) -> Path:
    """Total and per-objective losses against step, from the trainer's metrics.jsonl."""
    records = training_records(output_dir)
    keys = sorted(k for k in (records[-1] if records else {}) if k.count("/") == 1 and k.endswith("/loss"))
    return plot_training_curves(
        output_dir, png_path, f"transactions pretraining ({Path(output_dir).name})", losses=[(k, k) for k in keys]
    )
