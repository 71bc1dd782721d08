"""Text corpora: read (CSV/TSV, Parquet, JSONL/JSON, plain text), tokenize, pad and stack.

Reading never loses rows silently: empty or missing texts are counted and reported by
`Corpus.report()` (or raise with `on_empty="error"`); every error names the file. Table formats
go through the shared `ssl_modal.data.readers` (errors name file, line and byte offset).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_modal.data.readers import FORMATS, DataFileNotFoundError, DataValidationError, check_utf8, detect_format
from ssl_modal.data.readers import read_table as read_data_table
from ssl_modal.text.tokenizer import TextTokenizer


class CorpusError(DataValidationError):
    """A corpus that cannot be used; the message names the file, the row or column, and why."""


@dataclass
class Corpus:
    """Texts (and labels) read from one file, with a record of what was skipped."""

    texts: list[str]
    labels: list | None
    path: Path
    n_rows: int
    skipped_rows: list[int] = field(default_factory=list)  # 1-based data rows with empty/missing text
    text_column: str = "text"
    rows: list[int] = field(default_factory=list)  # 1-based data row of each kept text (ids for export)

    def __len__(self) -> int:
        return len(self.texts)

    def report(self) -> str:
        msg = f"{self.path}: {self.n_rows:,} rows, {len(self.texts):,} texts used"
        if self.skipped_rows:
            rows = ", ".join(map(str, self.skipped_rows[:10])) + (", ..." if len(self.skipped_rows) > 10 else "")
            msg += f"; {len(self.skipped_rows):,} empty or missing texts skipped (rows {rows})"
        return msg


def _read_lines(path: Path, text_column: str):
    """A plain-text corpus: one text per line (blank lines become empty texts, reported later)."""
    import pandas as pd

    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: file not found (working directory {Path.cwd()})")
    if path.stat().st_size == 0:
        raise CorpusError(f"{path}: file is empty (0 bytes)")
    check_utf8(path)
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pd.DataFrame({text_column: [line.rstrip("\r") for line in lines]})


def read_table(path: str | Path, text_column: str = "text"):
    """A corpus file as a DataFrame: .txt (one text per line, in `text_column`) or any table format
    of `ssl_modal.data.readers.read_table` (CSV/TSV, Parquet, JSONL, JSON)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return _read_lines(path, text_column)
    try:
        detect_format(path)
    except DataValidationError:
        raise CorpusError(
            f"{path}: unsupported file type '{''.join(path.suffixes)}'; a text corpus is one of "
            f"{', '.join(sorted([*FORMATS, '.txt']))} (text formats may end in .gz)"
        ) from None
    return read_data_table(path)


def _missing_column(path: Path, kind: str, name: str, columns: list[str], key: str) -> CorpusError:
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return CorpusError(
        f"{path} has no {kind} column '{name}'{hint}; columns found: {', '.join(map(str, columns)) or 'none'}. "
        f"Set {key} to one of them."
    )


def _is_empty(value: Any) -> bool:
    import pandas as pd

    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: not a missing scalar
        return False


def read_corpus(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = None,
    max_examples: int | None = None,
    on_empty: str = "skip",
) -> Corpus:
    """Read texts (and labels if `label_column`) from a corpus file.

    on_empty: "skip" drops empty/missing texts and records them in `skipped_rows` (with a warning),
    "error" raises a CorpusError listing them.
    """
    if on_empty not in ("skip", "error"):
        raise ValueError(f"on_empty must be 'skip' or 'error', got {on_empty!r}")
    path = Path(path)
    frame = read_table(path, text_column)
    columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise CorpusError(f"{path}: no data rows (columns found: {', '.join(columns) or 'none'}): the corpus is empty")
    if text_column not in frame.columns:
        raise _missing_column(path, "text", text_column, columns, "data.text_column")
    if label_column is not None and label_column not in frame.columns:
        raise _missing_column(path, "label", label_column, columns, "data.label_column (or null for no labels)")
    raw = frame[text_column].tolist()
    empty = [i for i, value in enumerate(raw) if _is_empty(value)]
    if len(empty) == len(raw):
        raise CorpusError(f"{path}: all {len(raw):,} texts in column '{text_column}' are empty or missing")
    if empty:
        rows = ", ".join(str(i + 1) for i in empty[:10]) + (", ..." if len(empty) > 10 else "")
        msg = (
            f"{path}: {len(empty):,} of {len(raw):,} texts in column '{text_column}' are empty or missing (rows {rows})"
        )
        if on_empty == "error":
            raise CorpusError(msg)
        warnings.warn(msg + "; they are skipped", stacklevel=2)
    skip = set(empty)
    keep = [i for i in range(len(raw)) if i not in skip]
    labels = None
    if label_column is not None:
        all_labels = frame[label_column].tolist()
        bad = [i + 1 for i in keep if _is_empty(all_labels[i])]
        if bad:
            rows = ", ".join(map(str, bad[:10]))
            raise CorpusError(f"{path}: {len(bad):,} row(s) have a text but no '{label_column}' label (rows {rows})")
        labels = [all_labels[i] for i in keep]
    texts = [str(raw[i]) for i in keep]
    rows = [i + 1 for i in keep]
    if max_examples is not None:
        texts, rows = texts[:max_examples], rows[:max_examples]
        labels = None if labels is None else labels[:max_examples]
    return Corpus(texts, labels, path, len(raw), [i + 1 for i in empty], text_column, rows)


def tokenize_texts(texts: Sequence[str], tokenizer: TextTokenizer, word_ids: bool = False, batch_size: int = 1000):
    """A `datasets.Dataset` of token ids (input_ids, special_tokens_mask[, word_ids]), one row per text."""
    import datasets

    def encode(batch: dict) -> dict:
        return tokenizer(batch["text"], word_ids=word_ids)

    ds = datasets.Dataset.from_dict({"text": list(texts)})
    return ds.map(
        encode,
        batched=True,
        batch_size=batch_size,
        remove_columns=["text"],
        desc="tokenize",
        new_fingerprint=f"tokenize-{len(texts)}-{word_ids}-{id(tokenizer)}",
    )


class TextCollate:
    """Pads and stacks a list of examples into a batch of tensors.

    Items may be raw strings, mappings with a `text_key` entry (rows of a table), or pre-tokenized
    mappings with "input_ids" (rows of `tokenize_texts`). Output: input_ids, attention_mask,
    special_tokens_mask (1 at special tokens and padding) and, with `word_ids=True`, word_ids (-1 at
    special tokens and padding). Packed rows (items with "segment_ids", see `text.packing`) keep their
    segment_ids (-1 at padding). Rows with "pair_input_ids" (`text.neighbours`) also give pair_input_ids and
    pair_attention_mask, padded on their own; rows with "cluster_labels" (`text.clusters`) a (B,) tensor of them;
    rows with "lexical_target" (`text.lexical`) give it as a float tensor.
    """

    def __init__(self, tokenizer: TextTokenizer, word_ids: bool = False, text_key: str = "text"):
        self.tokenizer = tokenizer
        self.word_ids = word_ids
        self.text_key = text_key

    def _texts(self, items: list) -> list[str]:
        texts = []
        for i, item in enumerate(items):
            value = item
            if not isinstance(item, str) and hasattr(item, "keys"):
                if self.text_key not in item.keys():
                    raise KeyError(f"batch item {i} has no '{self.text_key}' entry; keys: {list(item.keys())[:10]}")
                value = item[self.text_key]
            if not isinstance(value, str):
                raise TypeError(f"batch item {i}: expected a string, found {type(value).__name__} ({value!r:.60})")
            texts.append(value)
        return texts

    def __call__(self, items: list) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty list of examples")
        first = items[0]
        present = set(first.keys()) if not isinstance(first, str) and hasattr(first, "keys") else set()
        if "input_ids" in present:
            keys = ("input_ids", "special_tokens_mask") + (("segment_ids",) if "segment_ids" in present else ())
            columns = {key: [item[key] for item in items] for key in keys}
            if self.word_ids:
                if "word_ids" not in present:
                    raise KeyError("whole-word masking needs 'word_ids': tokenize with word_ids=True")
                columns["word_ids"] = [item["word_ids"] for item in items]
        else:
            columns = self.tokenizer(self._texts(items), word_ids=self.word_ids)
        out = self.pad(columns)
        if "pair_input_ids" in present:
            pairs = self.pad(
                {
                    "input_ids": [x["pair_input_ids"] for x in items],
                    "special_tokens_mask": [[0] * len(x["pair_input_ids"]) for x in items],
                }
            )
            out["pair_input_ids"], out["pair_attention_mask"] = pairs["input_ids"], pairs["attention_mask"]
        if "cluster_labels" in present:
            out["cluster_labels"] = torch.tensor([int(x["cluster_labels"]) for x in items], dtype=torch.long)
        if "lexical_target" in present:
            out["lexical_target"] = torch.tensor([x["lexical_target"] for x in items], dtype=torch.float32)
        return out

    def pad(self, columns: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
        ids = columns["input_ids"]
        batch, length = len(ids), max(len(x) for x in ids)
        out = {
            "input_ids": torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((batch, length), dtype=torch.long),
            "special_tokens_mask": torch.ones((batch, length), dtype=torch.long),
        }
        for key in ("word_ids", "segment_ids"):
            if key in columns:
                out[key] = torch.full((batch, length), -1, dtype=torch.long)
        for row, seq in enumerate(ids):
            n = len(seq)
            out["input_ids"][row, :n] = torch.as_tensor(seq, dtype=torch.long)
            out["attention_mask"][row, :n] = 1
            out["special_tokens_mask"][row, :n] = torch.as_tensor(columns["special_tokens_mask"][row], dtype=torch.long)
            for key in ("word_ids", "segment_ids"):
                if key in out:
                    out[key][row, :n] = torch.as_tensor(columns[key][row], dtype=torch.long)
        return out
