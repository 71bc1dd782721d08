"""Transactions domain: bank tables -> per-client sequences -> field encoder, MCC embeddings, fraud features.

Data part (T-data): ColumnMapping, PreprocessConfig, TransactionPreprocessor, SequenceSet, collate_sequences.
Model part (T-model): TransactionEncoder, build_transactions_model, features, client_embeddings,
mcc_embeddings, nearest_mccs, train_skipgram.
"""

from ssl_modal.transactions.mapping import ColumnMapping
from ssl_modal.transactions.preprocess import MASK, PAD, UNK, PreprocessConfig, TransactionPreprocessor
from ssl_modal.transactions.sequences import SequenceSet, collate_sequences

__all__ = [
    "ColumnMapping",
    "PreprocessConfig",
    "TransactionPreprocessor",
    "SequenceSet",
    "collate_sequences",
    "PAD",
    "MASK",
    "UNK",
]

# --- model part (T-model may extend below) ---
from ssl_modal.transactions.config import TransactionsConfig  # noqa: E402
from ssl_modal.transactions.encoder import TransactionEncoder  # noqa: E402
from ssl_modal.transactions.features import client_embeddings, features  # noqa: E402
from ssl_modal.transactions.mcc import mcc_embeddings, nearest_mccs  # noqa: E402
from ssl_modal.transactions.model import build_transactions_model, transactions_model_config  # noqa: E402
from ssl_modal.transactions.skipgram import train_skipgram  # noqa: E402

__all__ += [
    "TransactionsConfig",
    "TransactionEncoder",
    "build_transactions_model",
    "transactions_model_config",
    "features",
    "client_embeddings",
    "mcc_embeddings",
    "nearest_mccs",
    "train_skipgram",
]
