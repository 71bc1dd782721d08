"""Embedding export: `encode` to numpy, `export` to Parquet / .npy / CSV / datasets.Dataset, `load_model`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, latest_valid_checkpoint, load_checkpoint
from .contract import ModelSpec, SSLModel, move_to
from .writers import EmbeddingWriter, check_output_path, id_array, output_format


def _rows(data, start: int, stop: int) -> list:
    """Items `start:stop` of a list, pandas Series, DataFrame (as dicts) or datasets.Dataset (as dicts)."""
    if hasattr(data, "iloc"):
        part = data.iloc[start:stop]
        return part.tolist() if getattr(part, "ndim", 2) == 1 else part.to_dict("records")
    if hasattr(data, "column_names") and hasattr(data, "select"):
        cols = data[start:stop]
        return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    return [data[i] for i in range(start, stop)]


def _check_data(data, what: str) -> int:
    """len(data); a bare str/bytes (which would encode one example per character) is refused."""
    if isinstance(data, (str, bytes)):
        raise TypeError(
            f"{what}: data is a single {type(data).__name__} ({len(data)} characters); "
            "pass a list of examples, e.g. [text], so it is not encoded character by character"
        )
    try:
        return len(data)
    except TypeError:
        raise TypeError(
            f"{what}: expected a sized collection of examples (list, pandas Series/DataFrame, "
            f"datasets.Dataset), found {type(data).__name__}"
        ) from None


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def iter_embeddings(
    model: SSLModel,
    data,
    batch_size: int = 64,
    normalize: bool = False,
    collate: Callable | None = None,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Yield float32 embedding blocks of `batch_size` rows, in input order."""
    collate = collate or model.collate
    if collate is None:
        raise ValueError("no collate function: pass collate=... or build the model with one")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
    device = _model_device(model)
    n = _check_data(data, "encode")
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=(n + batch_size - 1) // batch_size, desc="encode", unit="batch")
    for start in starts:
        batch = move_to(collate(_rows(data, start, min(n, start + batch_size))), device)
        pooled = model.embed(batch).float()
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        yield pooled.cpu().numpy().astype(np.float32, copy=False)


def encode(
    model: SSLModel,
    data,
    batch_size: int = 64,
    normalize: bool = False,
    collate: Callable | None = None,
    progress: bool = False,
) -> np.ndarray:
    """One float32 vector per example of `data` (a list, pandas Series/DataFrame or datasets.Dataset; a bare
    str is refused), in input order: shape (len(data), D)."""
    blocks = list(iter_embeddings(model, data, batch_size, normalize, collate, progress))
    if not blocks:
        raise ValueError("encode got no data (0 examples)")
    return np.concatenate(blocks, axis=0)


def _id_columns(data, ids, id_columns: Sequence[str] | None, n: int) -> dict:
    """{name: column} of the ids to write beside the embeddings, dtypes kept, mixed types refused."""
    if id_columns:
        found = list(getattr(data, "columns", getattr(data, "column_names", [])))
        missing = [c for c in id_columns if c not in found]
        if missing:
            raise KeyError(f"id_columns {missing} are not columns of the data (found: {found})")
        return {c: id_array(np.asarray(data[c]) if not hasattr(data, "iloc") else data[c], c) for c in id_columns}
    if ids is None:
        return {"row": np.arange(n)}
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids: expected one id per row (a list or column), found a single string")
    named = (
        {str(c): ids[c] for c in ids.columns}
        if hasattr(ids, "columns")
        else dict(ids)
        if isinstance(ids, dict)
        else {"id": ids}
    )
    out = {}
    for name, values in named.items():
        if len(values) != n:
            raise ValueError(f"ids '{name}' has {len(values)} entries but data has {n} rows")
        out[name] = id_array(values, name)
    return out


def export(
    model: SSLModel,
    data,
    path: str | Path,
    *,
    ids=None,
    id_columns: Sequence[str] | None = None,
    batch_size: int = 64,
    normalize: bool = False,
    collate: Callable | None = None,
    format: str | None = None,
    chunk_size: int = 8192,
    progress: bool = True,
) -> Path:
    """Write embeddings of `data` to `path`, streaming `chunk_size` rows at a time.

    Format from `format` or the suffix: ".parquet" (id columns + "embedding" list<float32>),
    ".npy" (a (N, D) float32 array), ".csv" (id columns + emb_000 ...), or "dataset" (a folder written by
    `datasets.Dataset.save_to_disk`: a path without a suffix, or format="dataset"). Other suffixes raise.
    Ids: `id_columns` of a DataFrame/Dataset, or `ids` (one per row; a DataFrame or dict gives several named
    columns), else a "row" column. Id dtypes are kept; a mix of types (1 and "b") raises.
    Nothing is left at `path` (or beside it) when writing fails.
    """
    fmt = output_format(path, format)
    n = _check_data(data, "export")
    if n == 0:
        raise ValueError("export got no data (0 examples)")
    id_cols = _id_columns(data, ids, id_columns, n)
    path = check_output_path(path, fmt)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"export {path.name}", unit="ex")
    try:
        with EmbeddingWriter(path, fmt, n) as writer:
            for start in range(0, n, chunk_size):
                stop = min(n, start + chunk_size)
                part = data.iloc[start:stop] if hasattr(data, "iloc") else _rows(data, start, stop)
                emb = np.concatenate(list(iter_embeddings(model, part, batch_size, normalize, collate)), axis=0)
                writer.write({k: v[start:stop] for k, v in id_cols.items()}, emb)
                if bar:
                    bar.update(stop - start)
    finally:
        if bar:
            bar.close()
    return path


def resolve_checkpoint(path: Path) -> dict:
    """The checkpoint a path names: a file, or a run folder's model.pt / newest usable step checkpoint."""
    if path.is_dir():
        if (path / "model.pt").is_file():
            return load_checkpoint(path / "model.pt")
        found = latest_valid_checkpoint(path / "checkpoints")
        if found is None:
            raise CheckpointError(f"{path} holds no model.pt and no usable checkpoint in {path / 'checkpoints'}")
        return found[1]
    return load_checkpoint(path)


def build_from_spec(spec: ModelSpec) -> SSLModel:
    """Call the builder named in a checkpoint (only ssl_modal builders are imported)."""
    module_name, _, func_name = spec.builder.partition(":")
    if not module_name.startswith("ssl_modal.") or not func_name:
        raise CheckpointError(f"refusing model builder '{spec.builder}': expected 'ssl_modal.<module>:<function>'")
    try:
        builder = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"model builder '{spec.builder}' is not available in this ssl-modal ({exc})") from None
    return builder(spec.config)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SSLModel:
    """Rebuild a model from a checkpoint file or run folder (no recipe, no pickle) in eval mode."""
    path = Path(path)
    ckpt = resolve_checkpoint(path)
    if not ckpt.get("spec"):
        raise CheckpointError(
            f"{path} stores no model spec (builder + config), so it cannot be rebuilt; "
            "build the model yourself and load_state_dict(checkpoint['model'])"
        )
    spec = ModelSpec(**ckpt["spec"])
    model = build_from_spec(spec)
    result = model.load_state_dict(ckpt["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not fit the '{spec.kind}' model built from its config: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(device).eval()
