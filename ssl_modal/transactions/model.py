"""`build_transactions_model(config)`: the checkpoint builder of the transactions domain.

`config` is plain data: {"preprocessor": TransactionPreprocessor.state_dict(), "encoder": {...},
"objectives": {"masked": {...}, "order": {...}, "contrastive": {...}, "history": {...}},
"field_counts": {field: [...]}}, so
`load_model(path)` rebuilds the model and its fitted preprocessing, and raw tables can be fed to
`features` / `client_embeddings` without the recipe. ("fields" may replace "preprocessor" for models
built on already-encoded batches, as in the tests.)
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial

import numpy as np

from ssl_modal.core.config import from_dict
from ssl_modal.core.contract import ModelSpec, SSLModel
from ssl_modal.transactions.config import EncoderConfig, ObjectivesConfig
from ssl_modal.transactions.encoder import TransactionEncoder
from ssl_modal.transactions.history import HistoryForecast
from ssl_modal.transactions.objectives import ContrastiveSubsequences, MaskedAttribute, OrderVerification

BUILDER = "ssl_modal.transactions.model:build_transactions_model"
KIND = "transactions"


def field_counts(sequences, field: str, vocab_size: int) -> list[int]:
    """How often each id of categorical `field` occurs in a SequenceSet (padding excluded)."""
    column = sequences.table.column(field).combine_chunks().flatten()
    ids = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.bincount(ids, minlength=vocab_size)[:vocab_size].astype(int).tolist()


def transactions_model_config(
    preprocessor, encoder: EncoderConfig, objectives: ObjectivesConfig, sequences=None, client_pooling=None
) -> dict:
    """The builder config from a fitted preprocessor and the recipe's sections; `sequences` (the
    training SequenceSet) adds per-value counts of every categorical field for `mcc_embeddings`;
    `client_pooling` (the run's `eval.client_pooling`) is what `client_embeddings` of this model uses by default."""
    config = {"preprocessor": preprocessor.state_dict(), "encoder": asdict(encoder), "objectives": asdict(objectives)}
    if client_pooling is not None:
        config["client_pooling"] = list(client_pooling)
    if sequences is not None:
        config["field_counts"] = {
            name: field_counts(sequences, name, int(f["vocab_size"]))
            for name, f in preprocessor.fields.items()
            if f["kind"] == "categorical"
        }
    return config


def load_preprocessor(state: dict):
    from ssl_modal.transactions.preprocess import TransactionPreprocessor

    return TransactionPreprocessor.from_state_dict(state)


def collate_for(fields: dict):
    """The batch collate of a model over `fields` (T-data's collate_sequences)."""
    from ssl_modal.transactions.sequences import collate_sequences

    return partial(collate_sequences, fields=fields)


def build_transactions_model(config: dict) -> SSLModel:
    """Encoder + the objectives with weight > 0. The model carries `.preprocessor` (None when built
    from "fields") and `.fields`."""
    preprocessor = load_preprocessor(config["preprocessor"]) if config.get("preprocessor") else None
    fields = preprocessor.fields if preprocessor is not None else config.get("fields")
    if not fields:
        raise ValueError("transactions model config needs 'preprocessor' (a fitted state) or 'fields'")
    encoder = TransactionEncoder(fields, from_dict(EncoderConfig, config.get("encoder") or {}, "encoder"))
    objectives_cfg = from_dict(ObjectivesConfig, config.get("objectives") or {}, "objectives")
    objectives, weights = {}, {}
    for name, cls in (
        ("masked", MaskedAttribute),
        ("order", OrderVerification),
        ("contrastive", ContrastiveSubsequences),
        ("history", HistoryForecast),
    ):
        section = getattr(objectives_cfg, name)
        if section.weight > 0:
            objectives[name], weights[name] = cls(encoder, section), section.weight
    if not objectives:
        raise ValueError("every objective has weight 0: set objectives.<masked|order|contrastive|history>.weight > 0")
    spec = ModelSpec(builder=BUILDER, config=config, kind=KIND)
    collate = collate_for(fields) if preprocessor is not None else None
    model = SSLModel(encoder, objectives, weights, spec=spec, collate=collate)
    model.preprocessor, model.fields = preprocessor, dict(fields)
    return model


def random_init(model: SSLModel, seed: int = 0) -> SSLModel:
    """The same architecture, heads and fitted preprocessing as `model`, with freshly drawn weights (seeded):
    the "random init" baseline row, without training a model for one step at learning rate 0."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_transactions_model(model.spec.config).eval()
