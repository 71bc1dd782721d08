"""Caption tokenizers: a WordPiece trained offline on the training captions, or a pretrained model's own."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(captions: list[str], vocab_size: int) -> str:
    """A lowercasing BERT-style WordPiece trained on `captions`, as the `tokenizers` JSON string."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(captions, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok.to_str()


def load_tokenizer(text_cfg: dict, tokenizer_json: str | None):
    """A transformers fast tokenizer: the pretrained folder's, else the stored WordPiece."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from .towers import resolve_pretrained

    path = resolve_pretrained(text_cfg.get("pretrained_path"))
    if path:
        return AutoTokenizer.from_pretrained(path)
    if not tokenizer_json:
        raise ValueError("aligner model config has neither text.pretrained_path nor a trained tokenizer")
    from tokenizers import Tokenizer

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def count_truncated(tokenizer, captions: list[str], max_length: int, source: str = "") -> int:
    """How many captions are longer than `max_length` tokens (they are truncated); logged when any."""
    lengths = [len(ids) for ids in tokenizer(list(captions), add_special_tokens=True)["input_ids"]]
    n = sum(length > max_length for length in lengths)
    if n:
        log.warning(
            "%s: %d of %d captions are longer than text.max_length=%d tokens (longest %d) and are truncated",
            source or "captions",
            n,
            len(captions),
            max_length,
            max(lengths),
        )
    return n
