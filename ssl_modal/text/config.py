"""The text recipe's config: one dataclass per section of `recipes/text_mlm.yaml`."""
from __future__ import annotations

from dataclasses import dataclass, field

from ssl_modal.core.trainer import TrainConfig


@dataclass
class ModelConfig:
    """A fresh BERT of this size, or an existing local HF masked-LM folder (`pretrained_path`)."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_length: int = 128            # tokens per text, [CLS] and [SEP] included; longer texts are truncated
    dropout: float = 0.1
    pretrained_path: str | None = None  # local folder with config.json + weights (never downloaded)


@dataclass
class TokenizerConfig:
    """Where the vocabulary comes from: `vocab_file` (a BERT vocab.txt, a tokenizer.json or a local
    HF folder) or a WordPiece vocabulary of `train_vocab_size` trained on the training texts.
    With neither, the tokenizer saved in `model.pretrained_path` is used."""

    vocab_file: str | None = None
    train_vocab_size: int | None = None
    lowercase: bool = True
    min_frequency: int = 2           # for training: minimum count of a merged piece


@dataclass
class MLMConfig:
    """HF DataCollatorForLanguageModeling rules: select `probability` of the tokens, then 80/10/10."""

    probability: float = 0.15
    whole_word: bool = False
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1


@dataclass
class DataConfig:
    """Corpus files (.csv/.tsv/.parquet/.jsonl/.json/.txt) and their columns."""

    train_file: str = ""
    test_file: str | None = None
    text_column: str = "text"
    label_column: str | None = "label"   # null: no labels, no probe
    max_train_examples: int | None = None
    on_empty: str = "skip"               # empty/missing texts: "skip" (counted, reported) or "error"


@dataclass
class EvalConfig:
    """Frozen-encoder probe after pretraining (train subset -> test file)."""

    probe_train_examples: int | None = 5000  # first N training texts (null: all)
    knn_k: int = 20
    batch_size: int = 128
    baselines: bool = True                  # also TF-IDF + logistic regression and a random-init encoder


@dataclass
class TextConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
