"""Shared fixtures for the text tests: the repo's AG News sample and a small trained tokenizer."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "ag_news"
SHARED = (REPO / ".." / "shared").resolve()
SHARED_VOCAB = SHARED / "data" / "text" / "bert_uncased_vocab" / "vocab.txt"


@pytest.fixture(scope="session")
def sample_texts() -> list[str]:
    from ssl_modal.text import read_corpus

    return read_corpus(SAMPLE / "train.csv").texts[:400]


@pytest.fixture(scope="session")
def small_tokenizer(sample_texts):
    from ssl_modal.text import train_wordpiece

    return train_wordpiece(sample_texts, vocab_size=1000, max_length=32)


def tiny_model_config(tokenizer, whole_word: bool = False) -> dict:
    from ssl_modal.text import MLMConfig, ModelConfig, text_model_config

    model = ModelConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_length=32, dropout=0.0)
    return text_model_config(model, MLMConfig(whole_word=whole_word), tokenizer)
