"""`ssl-modal embed` for aligner models: one column of a pairs manifest, captions or images.

`--column caption` embeds the texts (empty captions raise naming their data rows, or are skipped with
on_error="skip"); a column whose values are image paths (.jpg, .png, ...; relative to the manifest's folder)
embeds the images, each checked once before encoding (missing or undecodable files name their row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_modal.aligner.data import load_image
from ssl_modal.data.embed_input import EmbedInput, check_on_error, empty_rows, id_columns, require_column, rows_text
from ssl_modal.data.readers import DataValidationError, read_table

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _is_image_column(values) -> bool:
    text = [str(v).strip().lower() for v in values if isinstance(v, str) and v.strip()]
    return bool(text) and all(t.endswith(IMAGE_SUFFIXES) for t in text)


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
    frame = read_table(path)
    if column is None:
        found = ", ".join(map(str, frame.columns))
        raise ValueError(
            f"{path}: an aligner embeds one column: --column <caption column> for texts or "
            f"--column <image path column> for images (found columns: {found})"
        )
    require_column(frame, column, path, "--column")
    values = frame[column]
    bad = list(empty_rows(values))
    images = _is_image_column(values)
    problems = []
    if images:
        root = Path(path).parent
        paths = [
            None if i in set(bad) else str(p if (p := Path(str(v).strip())).is_absolute() else root / p)
            for i, v in enumerate(values)
        ]
        for i, p in enumerate(paths):
            if p is None:
                continue
            try:
                load_image(p)
            except DataValidationError as exc:
                problems.append((i, str(exc)))
    what = "image paths" if images else "captions"
    if bad or problems:
        parts = [f"{len(bad)} empty {what} (data rows {rows_text(bad)})"] if bad else []
        if problems:
            parts.append(f"{len(problems)} unusable image(s) (data row {problems[0][0] + 1}: {problems[0][1]})")
        msg = f"{path}: column '{column}': " + "; ".join(parts)
        skip = sorted(set(bad) | {i for i, _ in problems})
        if on_error == "error" or len(skip) == len(values):
            raise DataValidationError(
                msg + ("; pass --on-error skip to leave them out" if len(skip) < len(values) else "")
            )
        bad = skip
    keep = np.setdiff1d(np.arange(len(values)), bad)
    data = (
        [{"image_path": paths[i]} for i in keep] if images else [{"caption": str(values.iloc[i]).strip()} for i in keep]
    )
    note = f"embedded {len(keep):,} {what} of column '{column}'"
    if len(keep) < len(values):
        note += f"; skipped {len(values) - len(keep):,} (data rows {rows_text(bad)})"
    return EmbedInput(data=data, ids=id_columns(frame, id_column, path, keep), note=note)
