"""Tokenizers for the text domain, all offline.

A `TextTokenizer` wraps a `tokenizers.Tokenizer` (the fast Rust backend every HF tokenizer uses)
and knows its mask and padding tokens. It comes from a BERT `vocab.txt`, a `tokenizer.json`, a local
HF folder, or is trained here with WordPiece on the user's corpus. Its whole state is a plain dict
(`to_config`), which the model stores in its checkpoint so `load_model` rebuilds it without files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer

from ssl_modal.text.config import TokenizerConfig

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TokenizerError(ValueError):
    """A vocabulary or tokenizer that cannot be used for masked language modelling."""


class TextTokenizer:
    """Text -> token ids (+ special-token mask, word ids), truncated to `max_length`."""

    def __init__(self, backend: Tokenizer, mask_token: str, pad_token: str, max_length: int = 128):
        self._json = backend.to_str()
        self.backend = Tokenizer.from_str(self._json)
        self.backend.no_padding()
        self.backend.no_truncation()
        self._json = self.backend.to_str()  # stored state: no padding/truncation settings
        if max_length < 2:
            raise TokenizerError(f"max_length must be at least 2 (room for special tokens), got {max_length}")
        self.max_length = int(max_length)
        self.backend.enable_truncation(self.max_length)
        self.mask_token, self.pad_token = mask_token, pad_token
        self.mask_token_id = self._require_id(mask_token, "mask")
        self.pad_token_id = self._require_id(pad_token, "padding")

    def _require_id(self, token: str | None, role: str) -> int:
        token_id = None if token is None else self.backend.token_to_id(token)
        if token_id is None:
            raise TokenizerError(
                f"the tokenizer has no {role} token {token!r} in its vocabulary of {self.vocab_size} "
                f"tokens; masked language modelling needs one (BERT uses {'[MASK]' if role == 'mask' else '[PAD]'})"
            )
        return token_id

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def __call__(self, texts: list[str], word_ids: bool = False) -> dict[str, list[list[int]]]:
        """Tokenize a list of strings (no padding): input_ids, special_tokens_mask[, word_ids]."""
        encodings = self.backend.encode_batch(list(texts))
        out = {
            "input_ids": [e.ids for e in encodings],
            "special_tokens_mask": [e.special_tokens_mask for e in encodings],
        }
        if word_ids:
            out["word_ids"] = [[-1 if w is None else w for w in e.word_ids] for e in encodings]
        return out

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(ids))

    def to_config(self) -> dict:
        """Plain-python state (JSON string of the tokenizer + special tokens) for a checkpoint."""
        return {"json": self._json, "mask_token": self.mask_token, "pad_token": self.pad_token}

    def save(self, path: str | Path) -> Path:
        """Write a `tokenizer.json` (readable by `load_tokenizer_path` and HF `tokenizers`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Tokenizer.from_str(self._json).save(str(path))
        return path

    @classmethod
    def from_config(cls, state: dict, max_length: int = 128) -> TextTokenizer:
        missing = {"json", "mask_token", "pad_token"} - set(state)
        if missing:
            raise TokenizerError(f"tokenizer state lacks {sorted(missing)}; found keys {sorted(state)}")
        return cls(Tokenizer.from_str(state["json"]), state["mask_token"], state["pad_token"], max_length)


def _read_vocab_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path} is not UTF-8 (byte offset {exc.start}); a vocab.txt must be UTF-8") from None
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _from_hf(hf_tokenizer, source: Path, max_length: int) -> TextTokenizer:
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"{source}: the tokenizer ({type(hf_tokenizer).__name__}) has no fast `tokenizers` backend; "
            "save it with a tokenizer.json (tokenizer.save_pretrained with a fast tokenizer)"
        )
    return TextTokenizer(backend, hf_tokenizer.mask_token, hf_tokenizer.pad_token, max_length)


def load_vocab_file(path: str | Path, lowercase: bool = True, max_length: int = 128) -> TextTokenizer:
    """A BERT WordPiece tokenizer from a `vocab.txt` (one token per line)."""
    from transformers import BertTokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    lines = _read_vocab_lines(path)
    if not lines:
        raise TokenizerError(f"vocabulary file {path} is empty")
    seen: dict[str, int] = {}
    for number, token in enumerate(lines, start=1):
        if token in seen:
            raise TokenizerError(
                f"{path}: token {token!r} appears on lines {seen[token]} and {number}; "
                "a vocab.txt holds each token once"
            )
        seen[token] = number
    missing = [t for t in BERT_SPECIALS if t not in seen]
    if missing:
        raise TokenizerError(
            f"{path} lacks the special token(s) {missing}; a BERT vocab.txt needs "
            "[PAD], [UNK], [CLS], [SEP] and [MASK] (masked language modelling uses [MASK])"
        )
    expected = len(lines)
    # transformers 5: BertTokenizerFast(vocab_file=...) silently ignores the file; vocab= is honoured.
    hf = BertTokenizer(vocab=str(path), do_lower_case=lowercase)
    if len(hf) != expected:
        raise TokenizerError(
            f"{path} has {expected} lines but the tokenizer built from it has {len(hf)} tokens "
            "(this transformers version did not read the file); expected one token per line"
        )
    return _from_hf(hf, path, max_length)


def load_tokenizer_path(path: str | Path, lowercase: bool = True, max_length: int = 128) -> TextTokenizer:
    """A tokenizer from a vocab.txt, a tokenizer.json, or a local HF folder (never downloads)."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".json":
            backend = Tokenizer.from_file(str(path))
            vocab = backend.get_vocab(with_added_tokens=True)
            mask = next((t for t in ("[MASK]", "<mask>") if t in vocab), None)
            pad = next((t for t in ("[PAD]", "<pad>") if t in vocab), None)
            return TextTokenizer(backend, mask, pad, max_length)
        return load_vocab_file(path, lowercase, max_length)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer not found: {path} is neither a file nor a folder")
    if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return _from_hf(AutoTokenizer.from_pretrained(str(path), local_files_only=True), path, max_length)
    if (path / "vocab.txt").is_file():
        return load_vocab_file(path / "vocab.txt", lowercase, max_length)
    found = sorted(p.name for p in path.iterdir())[:10]
    raise TokenizerError(
        f"{path} holds no tokenizer: expected tokenizer.json, tokenizer_config.json or vocab.txt, found {found}"
    )


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 2, max_length: int = 128
) -> TextTokenizer:
    """Train a BERT-style WordPiece tokenizer on `texts`, offline (a few seconds for MBs of text)."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    if vocab_size < len(BERT_SPECIALS) + 1:
        raise TokenizerError(f"train_vocab_size must exceed {len(BERT_SPECIALS)}, got {vocab_size}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(BERT_SPECIALS), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return TextTokenizer(tok, "[MASK]", "[PAD]", max_length)


def build_tokenizer(
    config: TokenizerConfig,
    max_length: int = 128,
    texts: Iterable[str] | None = None,
    pretrained_path: str | None = None,
) -> TextTokenizer:
    """Resolve `config` into a tokenizer: vocab_file, else train_vocab_size on `texts`, else the
    tokenizer saved with `pretrained_path`."""
    if config.vocab_file and config.train_vocab_size:
        raise TokenizerError("set either tokenizer.vocab_file or tokenizer.train_vocab_size, not both")
    if config.vocab_file:
        return load_tokenizer_path(config.vocab_file, config.lowercase, max_length)
    if config.train_vocab_size:
        if texts is None:
            raise TokenizerError("tokenizer.train_vocab_size is set but no training texts were given")
        return train_wordpiece(texts, config.train_vocab_size, config.lowercase, config.min_frequency, max_length)
    if pretrained_path:
        return load_tokenizer_path(pretrained_path, config.lowercase, max_length)
    raise TokenizerError(
        "no tokenizer configured: set tokenizer.vocab_file (a vocab.txt / tokenizer.json / folder), "
        "tokenizer.train_vocab_size (train WordPiece on the corpus), or model.init_from"
    )
