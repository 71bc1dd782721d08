"""Atomic checkpoints that load with `torch.load(weights_only=True)`.

A checkpoint is one file holding only tensors and plain Python values:
{"format", "format_version", "library_version", "spec": {builder, config, kind}, "model",
 and for training checkpoints "optimizer", "scheduler", "scaler", "trainer", "rng", "train_config"}.
Writes go to a temp file in the same folder, are fsynced, then `os.replace`d into place, so a crash
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import typing
import warnings
from pathlib import Path

import numpy as np
import torch

FORMAT = "ssl-modal-checkpoint"
FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, of another model, or from a newer version."""


def _library_version() -> str:
    from ssl_modal import __version__

    return __version__


def atomic_save(obj: dict, path: str | Path) -> Path:
    """torch.save to a temp file, fsync, os.replace into `path`, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def make_checkpoint(model, **extra) -> dict:
    """The common header + model weights; `extra` adds training state."""
    spec = getattr(model, "spec", None)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": _library_version(),
        "spec": None if spec is None else {"builder": spec.builder, "config": spec.config, "kind": spec.kind},
        "model": model.state_dict(),
        **extra,
    }


def load_checkpoint(path: str | Path) -> dict:
    """Load and check one checkpoint file; CheckpointError with the file name and reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was not written by a completed save")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated, corrupt or not a weights-only file ({reason}); "
            "it cannot be used: pick an earlier checkpoint or retrain"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not an ssl-modal checkpoint: expected a dict with format='{FORMAT}', found {found}"
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version} (written by ssl-modal "
            f"{ckpt.get('library_version')}); this ssl-modal {_library_version()} reads versions up to "
            f"{FORMAT_VERSION}: upgrade ssl-modal"
        )
    return ckpt


def step_checkpoints(folder: str | Path) -> list[Path]:
    """`step-XXXXXXXX.pt` files in `folder`, newest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_valid_checkpoint(folder: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint in `folder` that loads and checks; corrupt ones are skipped with a warning."""
    for path in step_checkpoints(folder):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping unusable checkpoint: {exc}", stacklevel=2)
    return None


def prune_checkpoints(folder: str | Path, keep_last: int) -> None:
    """Delete all but the `keep_last` newest step checkpoints."""
    for path in step_checkpoints(folder)[max(1, keep_last) :]:
        path.unlink(missing_ok=True)


def capture_rng(generator: torch.Generator | None) -> dict:
    """RNG states as tensors and plain values, so they survive weights_only loading."""
    _, keys, pos, has_gauss, gauss = typing.cast(tuple, np.random.get_state())
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "generator": None if generator is None else generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def weights_fingerprint(
    model: torch.nn.Module, *, skip_prefix: str | tuple[str, ...] | None = None, salt: str = ""
) -> str:
    """sha256 over the model's state dict (names, shapes and bytes, in name order), after `salt` (e.g. its config):
    equal for equal weights, whatever their dtype. Tensors under `skip_prefix` (one prefix or several) are left out."""
    h = hashlib.sha256(salt.encode())
    for name, tensor in sorted(model.state_dict().items()):
        if skip_prefix and name.startswith(skip_prefix):
            continue
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
