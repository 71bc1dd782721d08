"""Corpora larger than RAM: Parquet/JSONL/CSV/text shards through `datasets`, memory-mapped, never a Python list.

`load_corpus_files` reads one file, a folder or a glob of shards with `datasets.load_dataset` into its on-disk
Arrow cache (memory-mapped: pages are read on demand, RSS does not grow with the corpus), drops empty or missing
texts (counted), and `tokenize_corpus_files` maps the tokenizer over it batch by batch, writing the token ids to
the cache as well. The result is a map-style `datasets.Dataset` the Trainer samples as usual, with the same
token ids as `tokenize_texts(read_corpus(...).texts, ...)` for the same texts. `streaming=True` returns a
`datasets.IterableDataset` instead (nothing cached; for one pass, e.g. embedding a corpus).
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from ssl_modal.data.readers import DataFileNotFoundError
from ssl_modal.text.data import CorpusError
from ssl_modal.text.tokenizer import TextTokenizer

log = logging.getLogger("ssl_modal")
BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".txt": "text"}


def corpus_files(source: str | Path | list) -> tuple[str, list[str]]:
    """(datasets builder name, sorted file list) of a file, folder or glob; one format per corpus."""
    if isinstance(source, (list, tuple)):
        files = [str(f) for f in source]
    elif Path(source).is_dir():
        files = sorted(str(p) for p in Path(source).iterdir() if p.suffix.lower() in BUILDERS)
    else:
        files = sorted(glob.glob(str(source))) if any(c in str(source) for c in "*?[") else [str(source)]
    if not files:
        raise DataFileNotFoundError(f"{source}: no corpus files ({', '.join(BUILDERS)}) found")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataFileNotFoundError(f"{missing[0]}: file not found (working directory {Path.cwd()})")
    kinds = {BUILDERS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise CorpusError(
            f"{source}: expected shards of one format ({', '.join(BUILDERS)}), found suffixes "
            f"{sorted({Path(f).suffix for f in files})}"
        )
    return kinds.pop(), files


def load_corpus_files(source, text_column: str = "text", *, cache_dir: str | None = None, streaming: bool = False):
    """The corpus as a memory-mapped `datasets.Dataset` (or IterableDataset) with empty texts dropped."""
    import datasets

    builder, files = corpus_files(source)
    ds = datasets.load_dataset(builder, data_files=files, split="train", cache_dir=cache_dir, streaming=streaming)
    columns = list(ds.column_names or ([] if streaming else []))
    if columns and text_column not in columns:
        raise CorpusError(
            f"{files[0]} has no text column '{text_column}'; columns found: {', '.join(columns)}. "
            "Set data.text_column to one of them."
        )

    def keep(batch):
        return [isinstance(t, str) and bool(t.strip()) for t in batch[text_column]]

    if streaming:
        return ds.filter(keep, batched=True)
    before = len(ds)
    ds = ds.filter(keep, batched=True, desc="drop empty texts")
    if len(ds) < before:
        log.warning("%s: %d of %d texts are empty or missing; they are skipped", source, before - len(ds), before)
    if len(ds) == 0:
        raise CorpusError(f"{source}: all {before:,} texts in column '{text_column}' are empty or missing")
    return ds


def tokenize_corpus_files(
    source,
    tokenizer: TextTokenizer,
    text_column: str = "text",
    *,
    word_ids: bool = False,
    batch_size: int = 1000,
    cache_dir: str | None = None,
    streaming: bool = False,
):
    """Token ids (input_ids, special_tokens_mask[, word_ids]) of every non-empty text, memory-mapped."""
    ds = load_corpus_files(source, text_column, cache_dir=cache_dir, streaming=streaming)

    def encode(batch: dict) -> dict:
        return tokenizer(batch[text_column], word_ids=word_ids)

    drop = list(ds.column_names) if ds.column_names else None
    if streaming:
        return ds.map(encode, batched=True, batch_size=batch_size, remove_columns=drop)
    return ds.map(encode, batched=True, batch_size=batch_size, remove_columns=drop, desc="tokenize")
