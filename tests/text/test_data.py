"""Corpus reading (formats and user mistakes), tokenisation via datasets.map, and the collate."""

import json

import pandas as pd
import pytest
import torch

from ssl_modal.data.readers import DataValidationError
from ssl_modal.text import CorpusError, TextCollate, read_corpus, tokenize_texts

ROWS = [("the cat sat on the mat .", 0), ("stocks rallied on friday .", 2), ("a late goal won the cup .", 1)]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".json"])
def test_reads_every_table_format(tmp_path, suffix):
    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    path = tmp_path / f"corpus{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict("records")), encoding="utf-8")
    else:
        frame.to_parquet(path)
    corpus = read_corpus(path, label_column="label")
    assert corpus.texts == [t for t, _ in ROWS] and corpus.labels == [y for _, y in ROWS]
    assert corpus.skipped_rows == [] and corpus.n_rows == 3


def test_plain_text_one_text_per_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first line\r\nsecond line\n\nfourth line\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"1 of 4 texts .* empty or missing \(rows 3\)"):
        corpus = read_corpus(path)
    assert corpus.texts == ["first line", "second line", "fourth line"]
    assert corpus.skipped_rows == [3]


def test_empty_corpus_errors(tmp_path):
    empty_txt = tmp_path / "empty.txt"
    empty_txt.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.txt: file is empty \(0 bytes\)"):
        read_corpus(empty_txt)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"empty\.csv: file is empty \(0 bytes\)"):
        read_corpus(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"header\.csv: no data rows \(only a header: text, label\)"):
        read_corpus(header_only)
    blank = tmp_path / "blank.csv"
    blank.write_text("text,label\n,1\n   ,2\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"blank\.csv: all 2 texts in column 'text' are empty or missing"):
        read_corpus(blank)


def test_missing_text_column_names_the_columns_found(tmp_path):
    path = tmp_path / "news.csv"
    pd.DataFrame({"body": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(CorpusError) as info:
        read_corpus(path, text_column="text")
    msg = str(info.value)
    assert "news.csv has no text column 'text'" in msg and "columns found: body, label" in msg
    assert "data.text_column" in msg
    with pytest.raises(CorpusError, match=r"no label column 'labels' \(did you mean 'label'\?\)"):
        read_corpus(path, text_column="body", label_column="labels")


def test_non_utf8_file_names_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nhello,1\ncaf\u00e9 au lait,2\n".encode("latin-1"))
    with pytest.raises(DataValidationError) as info:
        read_corpus(path)
    msg = str(info.value)
    assert "latin1.csv: not valid UTF-8 at line 3, column 4, byte offset 22 (byte 0xe9)" in msg
    text = tmp_path / "latin1.txt"  # plain-text corpora are checked the same way
    text.write_bytes("first\nna\u00efve\n".encode("latin-1"))
    with pytest.raises(DataValidationError, match=r"latin1\.txt: not valid UTF-8 at line 2, column 3, byte offset 8"):
        read_corpus(text)


def test_empty_and_nan_texts_are_counted_and_reported(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text('text,label\nfine,0\n,1\n"  ",2\nalso fine,3\n', encoding="utf-8")
    with pytest.warns(UserWarning, match=r"2 of 4 texts in column 'text' are empty or missing \(rows 2, 3\)"):
        corpus = read_corpus(path, label_column="label")
    assert corpus.texts == ["fine", "also fine"] and corpus.labels == [0, 3]
    assert corpus.skipped_rows == [2, 3]
    assert "2 empty or missing texts skipped (rows 2, 3)" in corpus.report()
    with pytest.raises(CorpusError, match=r"gaps\.csv: 2 of 4 texts .* \(rows 2, 3\)"):
        read_corpus(path, on_empty="error")
    nan_path = tmp_path / "nan.parquet"
    pd.DataFrame({"text": ["ok", None, float("nan")]}).to_parquet(nan_path)
    with pytest.warns(UserWarning, match="2 of 3 texts"):
        assert read_corpus(nan_path).skipped_rows == [2, 3]


def test_missing_label_and_unknown_format(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("text,label\na,0\nb,\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"1 row\(s\) have a text but no 'label' label \(rows 2\)"):
        read_corpus(path, label_column="label")
    other = tmp_path / "corpus.xlsx"
    other.write_bytes(b"x")
    with pytest.raises(CorpusError, match=r"unsupported file type '\.xlsx'; a text corpus is one of .*\.txt"):
        read_corpus(other)
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        read_corpus(tmp_path / "nothere.csv")


def test_numeric_looking_texts_stay_text(tmp_path):
    path = tmp_path / "nums.csv"
    path.write_text("text\n123\nNA\nnull\n", encoding="utf-8")
    assert read_corpus(path).texts == ["123", "NA", "null"]


def test_tokenize_and_collate_pad_and_stack(small_tokenizer, sample_texts):
    texts = sample_texts[:6] + ["short ."]
    ds = tokenize_texts(texts, small_tokenizer, word_ids=True)
    assert ds.column_names == ["input_ids", "special_tokens_mask", "word_ids"] and len(ds) == 7
    collate = TextCollate(small_tokenizer, word_ids=True)
    batch = collate([ds[i] for i in range(len(ds))])
    lengths = [len(ds[i]["input_ids"]) for i in range(len(ds))]
    assert batch["input_ids"].shape == (7, max(lengths)) and max(lengths) <= 32
    assert batch["attention_mask"].sum(1).tolist() == lengths
    pad = batch["attention_mask"] == 0
    assert pad.any(), "the short text must be padded"
    assert (batch["input_ids"][pad] == small_tokenizer.pad_token_id).all()
    assert (batch["special_tokens_mask"][pad] == 1).all() and (batch["word_ids"][pad] == -1).all()
    assert (batch["word_ids"][batch["special_tokens_mask"] == 1] == -1).all()
    # raw strings and table rows give the same batch as pre-tokenized rows
    for items in (texts, [{"text": t, "label": 0} for t in texts]):
        again = collate(items)
        assert all(torch.equal(again[k], batch[k]) for k in batch)
    with pytest.raises(TypeError, match=r"batch item 1: expected a string, found float"):
        collate(["fine", float("nan")])
    with pytest.raises(KeyError, match="batch item 0 has no 'text' entry"):
        collate([{"body": "x"}])
