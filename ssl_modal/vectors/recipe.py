"""Recipe support for `domain: vectors`: pretrain on numeric columns of a table, probe against raw features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssl_modal.core.config import to_dict
from ssl_modal.core.evaluate import ProbeTable, probe
from ssl_modal.core.export import encode, load_model
from ssl_modal.core.trainer import TrainConfig, Trainer, TrainResult
from ssl_modal.data.readers import read_table

from .model import VectorConfig, build_vector_model, collate_vectors


@dataclass
class DataConfig:
    file: str = ""
    feature_columns: list = field(default_factory=list)  # empty: every numeric column but the label
    label_column: str | None = None


@dataclass
class Config:
    model: VectorConfig = field(default_factory=VectorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_features(cfg: Config) -> tuple[np.ndarray, np.ndarray | None, list]:
    """(features, labels or None, feature column names) of the recipe's table."""
    frame = read_table(cfg.data.file)
    columns = list(cfg.data.feature_columns) or [
        c for c in frame.select_dtypes("number").columns if c != cfg.data.label_column
    ]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{cfg.data.file}: feature columns {missing} not found; columns: {list(frame.columns)}")
    x = frame[columns].to_numpy(dtype=np.float32)
    bad = int(np.isnan(x).any(axis=1).sum())
    if bad:
        raise ValueError(f"{cfg.data.file}: {bad} rows have missing/NaN features in {columns}")
    labels = frame[cfg.data.label_column].to_numpy() if cfg.data.label_column else None
    return x, labels, columns


def train(cfg: Config) -> TrainResult:
    x, _, columns = load_features(cfg)
    if x.shape[1] != cfg.model.dim:
        raise ValueError(f"model.dim is {cfg.model.dim} but {cfg.data.file} has {x.shape[1]} feature columns")
    model = build_vector_model({**to_dict(cfg.model), "columns": columns})
    return Trainer(cfg.train).fit(model, list(x), collate_vectors)


def evaluate(cfg: Config) -> ProbeTable:
    x, labels, _ = load_features(cfg)
    if labels is None:
        raise ValueError("evaluate needs data.label_column")
    model = load_model(cfg.train.output_dir)
    return ProbeTable(
        [probe(encode(model, list(x)), labels, name="ssl encoder"), probe(x, labels, name="raw features")]
    )
