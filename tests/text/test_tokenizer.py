"""Offline tokenizers: the shared BERT vocab, WordPiece training, checkpointable state, bad vocabularies."""

import pytest

from ssl_modal.text import (
    TextTokenizer,
    TokenizerConfig,
    TokenizerError,
    build_tokenizer,
    load_tokenizer_path,
    load_vocab_file,
    train_wordpiece,
)

from .conftest import SHARED_VOCAB

needs_shared = pytest.mark.skipif(
    not SHARED_VOCAB.is_file(), reason=f"shared BERT vocab not found at {SHARED_VOCAB} (../shared is absent)"
)


@needs_shared
def test_shared_bert_vocab_has_30522_tokens():
    tok = load_vocab_file(SHARED_VOCAB, max_length=16)
    assert tok.vocab_size == 30522
    assert (tok.pad_token_id, tok.mask_token_id) == (0, 103)
    out = tok(["Hello world, unbelievable!"], word_ids=True)
    assert out["input_ids"][0][0] == 101 and out["input_ids"][0][-1] == 102  # [CLS] ... [SEP]
    assert out["special_tokens_mask"][0][0] == 1 and out["special_tokens_mask"][0][1] == 0
    assert out["word_ids"][0][0] == -1 and out["word_ids"][0][1] == 0
    # lowercased WordPiece: "unbelievable" is one known token, "Hello" becomes "hello"
    assert tok.decode(out["input_ids"][0]) == "hello world, unbelievable!"
    # the folder form finds vocab.txt and the config form rebuilds the same tokenizer
    assert load_tokenizer_path(SHARED_VOCAB.parent).vocab_size == 30522
    again = TextTokenizer.from_config(tok.to_config(), max_length=16)
    assert again.vocab_size == 30522 and again(["hello world"]) == tok(["hello world"])


@needs_shared
def test_truncation_keeps_special_tokens():
    tok = load_vocab_file(SHARED_VOCAB, max_length=8)
    ids = tok(["one two three four five six seven eight nine ten"])["input_ids"][0]
    assert len(ids) == 8 and ids[0] == 101 and ids[-1] == 102


def test_trained_wordpiece_roundtrips_through_plain_config(sample_texts):
    tok = train_wordpiece(sample_texts, vocab_size=800, max_length=64)
    assert 100 < tok.vocab_size <= 800
    state = tok.to_config()
    assert set(state) == {"json", "mask_token", "pad_token"} and isinstance(state["json"], str)
    again = TextTokenizer.from_config(state, max_length=64)
    texts = sample_texts[:5]
    assert again(texts, word_ids=True) == tok(texts, word_ids=True)
    assert tok.mask_token_id == tok.backend.token_to_id("[MASK]")


def test_vocab_with_duplicate_lines_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "a"]) + "\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"token 'a' appears on lines 6 and 8"):
        load_vocab_file(path)


def test_vocab_without_mask_token_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"vocab.txt lacks the special token\(s\) \['\[MASK\]'\]"):
        load_vocab_file(path)


def test_vocab_size_mismatch_is_an_error_not_a_tiny_vocab(tmp_path, monkeypatch):
    """transformers 5 `BertTokenizerFast(vocab_file=...)` silently built a 5-token vocab: we must refuse."""
    import transformers

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n", encoding="utf-8")

    class IgnoresFile(transformers.BertTokenizer):
        def __init__(self, vocab=None, **kwargs):
            super().__init__(vocab=None, **kwargs)

    monkeypatch.setattr(transformers, "BertTokenizer", IgnoresFile)
    with pytest.raises(TokenizerError, match=r"has 7 lines but the tokenizer built from it has 5 tokens"):
        load_vocab_file(path)


def test_build_tokenizer_needs_exactly_one_source(tmp_path, sample_texts):
    with pytest.raises(TokenizerError, match="no tokenizer configured"):
        build_tokenizer(TokenizerConfig())
    with pytest.raises(TokenizerError, match="not both"):
        build_tokenizer(TokenizerConfig(vocab_file="x.txt", train_vocab_size=100))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_tokenizer(TokenizerConfig(vocab_file=str(tmp_path / "missing.txt")))
    tok = build_tokenizer(TokenizerConfig(train_vocab_size=500), max_length=32, texts=sample_texts)
    assert tok.vocab_size <= 500 and tok.max_length == 32
