"""Embedding writers: Parquet, .npy, CSV and datasets folders, written to a temp path and renamed.

    fmt = output_format("emb.csv")               # "csv"; unknown suffixes raise with the supported list
    with EmbeddingWriter("emb.csv", fmt, n) as w:
        w.write({"id": ids[:k]}, emb[:k])        # chunks, in order; the file appears only on success

Layouts: Parquet = id columns + "embedding" (fixed-size list<float32>); .npy = an (N, D) float32 array;
CSV = id columns + emb_000 ... emb_<D-1>; "dataset" = a folder written by `datasets.Dataset.save_to_disk`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SUFFIXES = {".parquet": "parquet", ".npy": "npy", ".csv": "csv"}
FORMATS = ("parquet", "npy", "csv", "dataset")
SUPPORTED = ".parquet, .npy, .csv, or a path without a suffix for a datasets folder (format='dataset')"


class OutputPathError(ValueError):
    """An output path that cannot be written: the message names the path and why."""


def output_format(path: str | Path, format: str | None = None) -> str:
    """The format asked for: `format` if given, else from the suffix (none = a datasets folder)."""
    path = Path(path)
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"export format: expected one of {', '.join(FORMATS)}, found '{format}'")
        return format
    suffix = path.suffix.lower()
    if not suffix:
        return "dataset"
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown output suffix '{path.suffix}'; supported: {SUPPORTED}")
    return SUFFIXES[suffix]


def check_output_path(path: str | Path, fmt: str, create: bool = True) -> Path:
    """Raise OutputPathError for a path that cannot be written (a parent that is a file, no permission, a folder
    where a file goes); `create` makes the missing parent folders."""
    path = Path(path)
    existing = next(p for p in [path.parent, *path.parent.parents] if p.exists() or p == Path(p.anchor or "."))
    if existing.exists() and not existing.is_dir():
        raise OutputPathError(f"{path}: cannot write here: '{existing}' is a file, expected a folder")
    if path.is_dir() and fmt != "dataset":
        raise OutputPathError(f"{path}: is a folder; expected a {fmt} file path (or a new path)")
    if path.exists() and not path.is_dir() and fmt == "dataset":
        raise OutputPathError(f"{path}: is a file; a datasets folder needs a folder path")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: folder '{existing}' is not writable (permission denied)")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"{path}: cannot create folder '{path.parent}': {exc.strerror}") from None
    return path


def id_array(values, name: str = "id"):
    """Ids as one Arrow-friendly column keeping their dtype; a mix of types (1 and 'b') raises."""
    series = (
        values if isinstance(values, pd.Series) else pd.Series(list(values) if not hasattr(values, "dtype") else values)
    )
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("mixed", "mixed-integer"):
        types: dict[str, tuple[int, object]] = {}
        for i, v in enumerate(series.tolist()):
            types.setdefault(type(v).__name__, (i, v))
        shown = ", ".join(f"{t} (first at position {i}: {v!r})" for t, (i, v) in list(types.items())[:3])
        raise ValueError(
            f"ids '{name}': expected one type for every id, found {shown}; convert them first (e.g. all to str)"
        )
    return series.to_numpy()


class EmbeddingWriter:
    """Streams (ids, embeddings) chunks to a temp file; `commit` renames it into place, `abort` removes it."""

    def __init__(self, path: str | Path, fmt: str, n: int):
        self.path, self.fmt, self.n = Path(path), fmt, n
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.part = self.path.with_name(f".{self.path.name}.part-{os.getpid()}.parquet")  # dataset staging
        self._parquet: Any = None  # pyarrow.parquet.ParquetWriter once the first chunk is written
        self._npy: Any = None  # np.memmap once the first chunk is written
        self._rows = 0

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write(self, ids: dict, emb: np.ndarray) -> None:
        emb = np.asarray(emb, dtype=np.float32)
        if self.fmt == "npy":
            if self._npy is None:
                shape = (self.n, emb.shape[1])
                self._npy = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)
            self._npy[self._rows : self._rows + len(emb)] = emb
        elif self.fmt == "csv":
            cols = {k: np.asarray(v) for k, v in ids.items()}
            cols.update({f"emb_{j:03d}": emb[:, j] for j in range(emb.shape[1])})
            pd.DataFrame(cols).to_csv(self.tmp, mode="a" if self._rows else "w", header=not self._rows, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            cols = {k: pa.array(v) for k, v in ids.items()}
            cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
            table = pa.table(cols)
            target = self.tmp if self.fmt == "parquet" else self.part
            self._parquet = self._parquet or pq.ParquetWriter(target, table.schema)
            self._parquet.write_table(table)
        self._rows += len(emb)

    def commit(self) -> Path:
        if self._npy is not None:
            self._npy.flush()
            self._npy = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self.fmt == "dataset":
            import datasets

            try:
                with tempfile.TemporaryDirectory() as cache:
                    ds = datasets.Dataset.from_parquet(str(self.part), cache_dir=cache)
                    ds.save_to_disk(str(self.tmp))
                    del ds
            finally:
                self.part.unlink(missing_ok=True)
            if self.path.exists():
                shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._npy = None
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:  # noqa: BLE001 - cleaning up after the real error
                pass
        for p in (self.tmp, self.part):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()


def write_embeddings(path: str | Path, emb: np.ndarray, ids: dict | None = None, format: str | None = None) -> Path:
    """Write a ready (N, D) array with its id columns (default: "row" 0..N-1) in one go."""
    fmt = output_format(path, format)
    path = check_output_path(path, fmt)
    ids = {k: id_array(v, k) for k, v in (ids or {"row": np.arange(len(emb))}).items()}
    with EmbeddingWriter(path, fmt, len(emb)) as writer:
        writer.write(ids, emb)
    return path
