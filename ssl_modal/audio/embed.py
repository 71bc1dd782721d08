"""`ssl-modal embed` for audio models: a manifest (CSV/Parquet/... with a path column) or a folder of audio files.

One embedding per file: the duration-weighted mean of its windows (see `ssl_modal.audio.export`), read at the
model's sample rate (other rates resampled, stereo down-mixed, both counted). Unusable files (missing,
zero-length, undecodable) raise naming the manifest row, or with `on_error="skip"` are left out and counted.
"""

from __future__ import annotations

from pathlib import Path

from ssl_modal.audio.export import manifest_segments, per_file
from ssl_modal.audio.io import AudioReader
from ssl_modal.core.export import encode
from ssl_modal.data.embed_input import EmbedInput, check_on_error, require_column
from ssl_modal.data.readers import read_table

WINDOW_SECONDS = 10.0


def embed_input(
    model,
    path: str | Path,
    *,
    column: str | None = None,
    id_column: str | None = None,
    on_error: str = "error",
    batch_size: int = 64,
    normalize: bool = False,
) -> EmbedInput:
    check_on_error(on_error)
    path_column = column or "path"
    if id_column is not None:
        if Path(path).is_dir():
            raise ValueError(f"{path}: --id-column needs a manifest table; a folder's files are named by 'path'")
        require_column(read_table(path), id_column, path, "--id-column")
    reader = AudioReader(model.spec.config["frontend"]["sample_rate"])
    labels = [id_column] if id_column else []
    segments = manifest_segments(model, path, WINDOW_SECONDS, path_column, labels, False, on_error, reader)
    emb = encode(model, segments, batch_size=batch_size, normalize=False)
    frame, emb = per_file(segments, emb, labels)
    if normalize:
        import numpy as np

        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    rows = sorted({s["row"] for s in segments})
    ids = {id_column: frame[id_column]} if id_column else {"row": rows, "path": frame["path"]}
    ids.update({"duration": frame["duration"]})
    return EmbedInput(ids=ids, embeddings=emb, note=reader.summary())
