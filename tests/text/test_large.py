"""Corpora from shards through `datasets`: memory-mapped, empty texts dropped, the same token ids as in memory."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest

from ssl_modal.text import read_corpus, tokenize_texts
from ssl_modal.text.data import CorpusError
from ssl_modal.text.large import load_corpus_files, tokenize_corpus_files

from .conftest import SAMPLE


def _shards(tmp_path, suffix):
    frame = pd.read_csv(SAMPLE / "train.csv").iloc[:300].reset_index(drop=True)
    frame.loc[[7, 150], "text"] = ["", None]
    folder = tmp_path / suffix.strip(".")
    folder.mkdir()
    for k, part in enumerate((frame.iloc[:100], frame.iloc[100:220], frame.iloc[220:])):
        path = folder / f"part-{k}{suffix}"
        part.to_parquet(path) if suffix == ".parquet" else part.to_json(path, orient="records", lines=True)
    frame.to_csv(tmp_path / "all.csv", index=False)
    return folder


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_shards_give_the_in_memory_token_ids_memory_mapped(tmp_path, small_tokenizer, suffix):
    folder = _shards(tmp_path, suffix)
    ds = tokenize_corpus_files(folder, small_tokenizer, word_ids=True, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="2 of 300 texts"):
        corpus = read_corpus(tmp_path / "all.csv")
    ref = tokenize_texts(corpus.texts, small_tokenizer, word_ids=True)
    assert len(ds) == len(ref) == 298
    assert ds["input_ids"] == ref["input_ids"] and ds["word_ids"] == ref["word_ids"]
    assert ds.cache_files and isinstance(ds.data, datasets.table.MemoryMappedTable)  # on disk, not in RAM
    streamed = tokenize_corpus_files(folder, small_tokenizer, streaming=True)
    assert [row["input_ids"] for row in streamed] == ref["input_ids"]


def test_shard_errors_name_the_problem(tmp_path):
    folder = _shards(tmp_path, ".parquet")
    with pytest.raises(CorpusError, match="no text column 'body'; columns found: text, label, label_name"):
        load_corpus_files(folder, "body", cache_dir=str(tmp_path / "cache"))
    (folder / "extra.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(CorpusError, match="shards of one format"):
        load_corpus_files(folder)
    with pytest.raises(FileNotFoundError, match="no corpus files"):
        load_corpus_files(tmp_path / "nothing*.parquet")
