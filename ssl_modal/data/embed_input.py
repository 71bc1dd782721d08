"""What `ssl-modal embed` hands to the exporter: a domain's `embed_input(model, path, ...)` returns an `EmbedInput`.

Each domain with its own input (audio manifests, video folders, transaction tables, captions or images)
has `ssl_modal.<domain>.embed.embed_input`; the ids written beside the embeddings keep the input's column
names and dtypes, and rows are the 1-based data rows of the input file (the first row after the header is 1).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .readers import DataValidationError

ON_ERROR = ("error", "skip")


@dataclass
class EmbedInput:
    """Examples for the model's collate (in output order) or ready `embeddings`, with their id columns."""

    data: Any = None
    ids: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # skipped rows, conversions: printed by the CLI
    embeddings: np.ndarray | None = None  # set when the domain computed them itself (per file, per client)


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error: expected one of {', '.join(ON_ERROR)}, found '{on_error}'")


def require_column(frame: pd.DataFrame, column: str, path, option: str) -> None:
    """Raise naming the file, the missing column, the columns found and the closest name."""
    if column in frame.columns:
        return
    found = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(str(column), found, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DataValidationError(
        f"{path}: {option} '{column}' is not a column (found columns: {', '.join(found) or 'none'}){hint}"
    )


def id_columns(frame: pd.DataFrame, id_column: str | None, path, keep: np.ndarray | None = None) -> dict:
    """{id_column: values} (name and dtype kept) or {"row": 1-based data rows}, restricted to `keep` positions."""
    keep = np.arange(len(frame)) if keep is None else np.asarray(keep, dtype=np.int64)
    if id_column is None:
        return {"row": keep + 1}
    require_column(frame, id_column, path, "--id-column")
    values = frame[id_column].iloc[keep].reset_index(drop=True)
    missing = values.isna().to_numpy()
    if missing.any():
        rows = (keep[missing] + 1)[:5].tolist()
        raise DataValidationError(
            f"{path}: --id-column '{id_column}': expected an id in every row, found "
            f"{int(missing.sum())} empty value(s) (data rows {rows})"
        )
    return {str(id_column): values}


def empty_rows(values: pd.Series) -> np.ndarray:
    """Positions whose value is missing or only whitespace."""
    miss = values.isna().to_numpy().copy()
    text = values.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    return np.flatnonzero(miss | text)


def rows_text(positions, limit: int = 10) -> str:
    """'rows 3, 7, 12, ...' of 0-based positions, printed as 1-based data rows."""
    rows = [int(p) + 1 for p in positions]
    return ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")
