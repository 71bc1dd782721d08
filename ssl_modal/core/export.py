"""Embedding export: `encode` to numpy, `export` to Parquet / .npy / datasets.Dataset, `load_model`."""
from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .checkpoint import CheckpointError, latest_valid_checkpoint, load_checkpoint
from .contract import ModelSpec, SSLModel, move_to


def _rows(data, start: int, stop: int) -> list:
    """Items `start:stop` of a list, pandas DataFrame (as dicts) or datasets.Dataset (as dicts)."""
    if hasattr(data, "iloc"):
        return data.iloc[start:stop].to_dict("records")
    if hasattr(data, "column_names") and hasattr(data, "select"):
        cols = data[start:stop]
        return [dict(zip(cols, values)) for values in zip(*cols.values())]
    return [data[i] for i in range(start, stop)]


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def iter_embeddings(model: SSLModel, data, batch_size: int = 64, normalize: bool = False,
                    collate: Callable | None = None, progress: bool = False) -> Iterator[np.ndarray]:
    """Yield float32 embedding blocks of `batch_size` rows, in input order."""
    collate = collate or model.collate
    if collate is None:
        raise ValueError("no collate function: pass collate=... or build the model with one")
    device = _model_device(model)
    n = len(data)
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


def encode(model: SSLModel, data, batch_size: int = 64, normalize: bool = False,
           collate: Callable | None = None, progress: bool = False) -> np.ndarray:
    """One float32 vector per example of `data`, in input order: shape (len(data), D)."""
    blocks = list(iter_embeddings(model, data, batch_size, normalize, collate, progress))
    if not blocks:
        raise ValueError("encode got no data (0 examples)")
    return np.concatenate(blocks, axis=0)


def _id_table(data, ids, id_columns: Sequence[str] | None, start: int, stop: int) -> dict:
    if id_columns:
        missing = [c for c in id_columns if c not in getattr(data, "columns", getattr(data, "column_names", []))]
        if missing:
            raise KeyError(f"id_columns {missing} are not columns of the data")
        rows = data.iloc[start:stop] if hasattr(data, "iloc") else data[start:stop]
        return {c: np.asarray(rows[c]) for c in id_columns}
    if ids is not None:
        return {"id": np.asarray(ids[start:stop])}
    return {"row": np.arange(start, stop)}


def export(model: SSLModel, data, path: str | Path, *, ids=None, id_columns: Sequence[str] | None = None,
           batch_size: int = 64, normalize: bool = False, collate: Callable | None = None,
           format: str | None = None, chunk_size: int = 8192, progress: bool = True) -> Path:
    """Write embeddings of `data` to `path`, streaming `chunk_size` rows at a time.

    Format from `format` or the suffix: ".parquet" (id columns + "embedding" list<float32>),
    ".npy" (a (N, D) float32 array), or "dataset" (a folder written by `datasets.Dataset.save_to_disk`).
    Ids: `id_columns` of a DataFrame/Dataset, or `ids` (one per row), else a "row" column.
    """
    path = Path(path)
    fmt = format or {".parquet": "parquet", ".npy": "npy"}.get(path.suffix, "dataset")
    if fmt not in ("parquet", "npy", "dataset"):
        raise ValueError(f"export format: expected 'parquet', 'npy' or 'dataset', found '{fmt}'")
    n = len(data)
    if n == 0:
        raise ValueError("export got no data (0 examples)")
    if ids is not None and len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries but data has {n} rows")
    path.parent.mkdir(parents=True, exist_ok=True)

    def chunks():
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            part = _rows(data, start, stop) if not hasattr(data, "iloc") else data.iloc[start:stop]
            emb = np.concatenate(list(iter_embeddings(model, part, batch_size, normalize, collate)), axis=0)
            yield start, stop, emb

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"export {path.name}", unit="ex")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            for start, stop, emb in chunks():
                cols = {k: pa.array(v) for k, v in _id_table(data, ids, id_columns, start, stop).items()}
                cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
                table = pa.table(cols)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                bar and bar.update(stop - start)
            writer.close()
            os.replace(tmp, path)
        elif fmt == "npy":
            out = None
            for start, stop, emb in chunks():
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, emb.shape[1]))
                out[start:stop] = emb
                bar and bar.update(stop - start)
            out.flush()
            del out
            os.replace(tmp, path)
        else:
            import datasets

            def rows():
                for start, stop, emb in chunks():
                    idt = _id_table(data, ids, id_columns, start, stop)
                    for i in range(stop - start):
                        yield {**{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in idt.items()},
                               "embedding": emb[i]}
                    bar and bar.update(stop - start)

            with tempfile.TemporaryDirectory() as cache:
                ds = datasets.Dataset.from_generator(rows, cache_dir=cache)
                ds.save_to_disk(str(tmp))
                del ds
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        if bar:
            bar.close()
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
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
        raise CheckpointError(f"{path} stores no model spec (builder + config), so it cannot be rebuilt; "
                              "build the model yourself and load_state_dict(checkpoint['model'])")
    spec = ModelSpec(**ckpt["spec"])
    model = build_from_spec(spec)
    result = model.load_state_dict(ckpt["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not fit the '{spec.kind}' model built from its config: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model.to(device).eval()
