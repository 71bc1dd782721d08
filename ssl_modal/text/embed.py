"""`ssl-modal embed` for text models: one text column of a table (or a .txt file, one text per line).

Empty or missing texts raise naming their data rows (`on_error="error"`), or are skipped and counted
(`on_error="skip"`); the output's "row" column (or the --id-column) says which row each embedding is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_modal.data.embed_input import EmbedInput, check_on_error, empty_rows, id_columns, require_column, rows_text
from ssl_modal.text.data import CorpusError, read_table


def embed_input(
    model, path: str | Path, *, column: str | None = None, id_column: str | None = None, on_error: str = "error"
) -> EmbedInput:
    check_on_error(on_error)
    key = getattr(model.collate, "text_key", "text")
    column = column or key
    frame = read_table(path, column)
    if len(frame) == 0:
        raise CorpusError(f"{path}: no data rows")
    require_column(frame, column, path, "--column" if column != key else "text column (--column)")
    values = frame[column]
    raw = values.tolist()
    not_text = [
        i
        for i, v in enumerate(raw)
        if not isinstance(v, str) and v is not None and not (isinstance(v, float) and np.isnan(v))
    ]
    if not_text:
        i = not_text[0]
        raise CorpusError(
            f"{path}: column '{column}': expected text, found {type(raw[i]).__name__} values "
            f"({len(not_text)} rows; first: data row {i + 1}: {raw[i]!r}); pick the text column with --column"
        )
    empty = empty_rows(values)
    note = ""
    lines = " (the line number in a .txt file)" if Path(path).suffix.lower() == ".txt" else ""
    if len(empty):
        msg = (
            f"{path}: {len(empty):,} of {len(values):,} texts in column '{column}' are empty or missing "
            f"(data rows{lines} {rows_text(empty)})"
        )
        if on_error == "error" or len(empty) == len(values):
            raise CorpusError(msg + ("; pass --on-error skip to leave them out" if len(empty) < len(values) else ""))
        note = msg + "; skipped"
    keep = np.setdiff1d(np.arange(len(values)), empty)
    return EmbedInput(data=values.iloc[keep].tolist(), ids=id_columns(frame, id_column, path, keep), note=note)
