"""Text domain: masked language modelling and sentence-level contrastive objectives (SimCSE, span crops) on any
HF masked-LM model, from scratch or continued from a local pretrained encoder; packing; offline tokenizers."""

from ssl_modal.text.config import (
    DataConfig,
    EvalConfig,
    MLMConfig,
    ModelConfig,
    ObjectivesConfig,
    TextConfig,
    TokenizerConfig,
)
from ssl_modal.text.data import Corpus, CorpusError, TextCollate, read_corpus, read_table, tokenize_texts
from ssl_modal.text.model import MaskedLM, TextEncoder, build_model, build_text_model, masked_mean, text_model_config
from ssl_modal.text.packing import pack_texts
from ssl_modal.text.sentence import SimCSE, SpanCrop
from ssl_modal.text.tokenizer import (
    TextTokenizer,
    TokenizerError,
    build_tokenizer,
    load_tokenizer_path,
    load_vocab_file,
    train_wordpiece,
)

__all__ = [
    "Corpus",
    "CorpusError",
    "DataConfig",
    "EvalConfig",
    "MLMConfig",
    "MaskedLM",
    "ModelConfig",
    "ObjectivesConfig",
    "SimCSE",
    "SpanCrop",
    "TextCollate",
    "pack_texts",
    "TextConfig",
    "TextEncoder",
    "TextTokenizer",
    "TokenizerConfig",
    "TokenizerError",
    "build_model",
    "build_text_model",
    "build_tokenizer",
    "load_tokenizer_path",
    "load_vocab_file",
    "masked_mean",
    "read_corpus",
    "read_table",
    "text_model_config",
    "tokenize_texts",
    "train_wordpiece",
]
