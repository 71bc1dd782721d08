"""Embeddings of audio files listed in a manifest (or a folder): one vector per file, or per window.

    frame, emb = encode_manifest(model, "clips.csv")                      # one row per file
    frame, emb = encode_manifest(model, "clips.csv", per_window=True)     # one row per window + offset
    export_manifest(model, "clips.csv", "emb.parquet", per_window=True)   # path, offset, duration, embedding

Files are cut into windows of `window_seconds` (the last one shorter); a file's vector is the mean of
its windows' vectors weighted by their duration. Per-window export goes through the core `export`
(id_columns), so it streams; per-file rows are written with the same Parquet layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_modal.audio.io import AudioReader, load_segments, read_manifest
from ssl_modal.core.export import encode, export

ID_COLUMNS = ["path", "offset", "duration"]


def manifest_segments(
    model,
    source,
    window_seconds: float | None = 10.0,
    path_column: str = "path",
    label_columns: list[str] | tuple = (),
    progress: bool = False,
    on_error: str = "error",
    reader: AudioReader | None = None,
) -> list[dict]:
    """Read the files of `source` at the model's sample rate, cut into windows (`on_error="skip"`: unusable
    files are left out and listed in `reader.skipped`)."""
    reader = reader or AudioReader(model.spec.config["frontend"]["sample_rate"])
    frame = read_manifest(source, path_column, on_error)
    return load_segments(frame, reader, window_seconds, None, label_columns, str(source), progress, on_error)


def per_file(
    segments: list[dict], emb: np.ndarray, label_columns: list[str] | tuple = ()
) -> tuple[pd.DataFrame, np.ndarray]:
    """Duration-weighted mean of window embeddings per manifest row, in manifest order."""
    rows = np.asarray([s["row"] for s in segments])
    weights = np.asarray([s["duration"] for s in segments], dtype=np.float64)
    order = sorted(set(rows.tolist()))
    out = np.zeros((len(order), emb.shape[1]), dtype=np.float32)
    records = []
    for j, row in enumerate(order):
        sel = np.flatnonzero(rows == row)
        w = weights[sel] / max(weights[sel].sum(), 1e-12)
        out[j] = (emb[sel] * w[:, None]).sum(0)
        first = segments[sel[0]]
        records.append(
            {
                "path": first["path"],
                "offset": first["offset"],
                "duration": float(weights[sel].sum()),
                "windows": len(sel),
                **{c: first[c] for c in label_columns},
            }
        )
    return pd.DataFrame(records), out


def encode_manifest(
    model,
    source,
    per_window: bool = False,
    window_seconds: float | None = 10.0,
    path_column: str = "path",
    label_columns: list[str] | tuple = (),
    batch_size: int = 64,
    normalize: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(ids frame, float32 embeddings): per file (path, offset, duration, windows) or, with `per_window`,
    per window (path, offset in seconds from the file start, duration); rows line up with the array."""
    segments = manifest_segments(model, source, window_seconds, path_column, label_columns)
    emb = encode(model, segments, batch_size=batch_size)
    if per_window:
        frame = pd.DataFrame([{k: s[k] for k in (*ID_COLUMNS, *label_columns)} for s in segments])
    else:
        frame, emb = per_file(segments, emb, label_columns)
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return frame, emb.astype(np.float32)


def export_manifest(
    model,
    source,
    path: str | Path,
    per_window: bool = False,
    window_seconds: float | None = 10.0,
    path_column: str = "path",
    batch_size: int = 64,
    normalize: bool = False,
) -> Path:
    """Write embeddings to Parquet with path/offset/duration columns (see `encode_manifest`)."""
    path = Path(path)
    if per_window:
        segments = manifest_segments(model, source, window_seconds, path_column)
        frame = pd.DataFrame(segments)
        return export(
            model, frame, path, id_columns=ID_COLUMNS, batch_size=batch_size, normalize=normalize, progress=False
        )
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame, emb = encode_manifest(model, source, False, window_seconds, path_column, (), batch_size, normalize)
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
