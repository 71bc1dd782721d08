"""`ssl-modal embed` for transactions models: a raw transactions table -> one embedding per client.

The table goes through the model's stored preprocessing (column mapping, vocabularies, amount bins), so it
needs the columns the model was trained on; the client column keeps its input name and dtype.
"""

from __future__ import annotations

from pathlib import Path

from ssl_modal.data.embed_input import EmbedInput, check_on_error
from ssl_modal.data.readers import DataValidationError, detect_format, read_table
from ssl_modal.transactions.features import CLIENT_ID, _preprocessor, client_embeddings


def embed_input(
    model,
    path: str | Path,
    *,
    column: str | None = None,
    id_column: str | None = None,
    on_error: str = "error",
    batch_size: int = 128,
    normalize: bool = False,
) -> EmbedInput:
    check_on_error(on_error)
    pre = _preprocessor(model)
    cols = pre.config.columns
    expects = f"a transactions table with the columns it was trained on ({', '.join(cols.required())})"
    if column is not None:
        raise ValueError(f"--column: a transactions model embeds whole client histories from {expects}; drop --column")
    if id_column not in (None, cols.client_id):
        raise ValueError(
            f"--id-column '{id_column}': a transactions model writes one row per client, keyed by "
            f"its client column '{cols.client_id}'; drop --id-column"
        )
    try:
        detect_format(path)
    except DataValidationError as exc:
        raise DataValidationError(f"this is a transactions model: it embeds {expects}; {exc}") from None
    frame = read_table(path)
    missing = [c for c in cols.required() if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{path}: this is a transactions model: it expects {expects}; missing "
            f"{missing} (found columns: {', '.join(map(str, frame.columns))})"
        )
    table = client_embeddings(model, frame, batch_size=batch_size)
    emb = table.filter(like="emb_").to_numpy(dtype="float32")
    if normalize:
        import numpy as np

        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    ids = {cols.client_id: table[CLIENT_ID], "windows": table["windows"], "events": table["events"]}
    return EmbedInput(ids=ids, embeddings=emb, note=f"{len(table):,} clients from {len(frame):,} rows")
