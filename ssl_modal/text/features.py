"""Frozen-encoder embeddings for the probes: texts taken in order of length (batches pad little), no autograd,
and, optionally, a cache of windows of consecutive texts keyed by the encoder's weights and the window's texts.

Embedding 22,000 AG News texts with all-MiniLM-L6-v2 takes minutes on 2 CPU cores; with a cache, an
evaluation cut short (a time limit, a signal) or rerun with other probe settings embeds only what is missing.
A key is a hash of the weights, the model's config (tokenizer included) and the texts, so a stale entry cannot
be read back: a changed model or corpus simply misses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ssl_modal.core.checkpoint import weights_fingerprint
from ssl_modal.core.export import encode

log = logging.getLogger("ssl_modal")
CHUNK = 2048  # texts per cached block


def model_fingerprint(model) -> str:
    """sha256 of the model's config and of the weights its embeddings depend on: every tensor of its state dict
    but those of the MLM head and of the objectives' heads (`objectives.lexical`, `objectives.cluster`): a fresh
    head's random init does not change an embedding."""
    config = getattr(getattr(model, "spec", None), "config", None)
    head = getattr(getattr(model, "encoder", None), "head_name", None)
    return weights_fingerprint(
        model,
        skip_prefix=(f"encoder.mlm.{head}.", "objectives.") if head else "objectives.",
        salt=json.dumps(config, sort_keys=True, default=str),
    )


def _chunk_key(fingerprint: str, texts: list[str]) -> str:
    digest = hashlib.sha1(fingerprint.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def embed_precision(setting: str, model) -> str:
    """The embedding precision ("no" or "bf16") for `eval.autocast`; "auto": bf16 where the device runs it natively."""
    from ssl_modal.core.precision import resolve_autocast

    device = next(model.parameters()).device
    precision = resolve_autocast(setting, device)[0]
    return "bf16" if precision == "bf16" else "no"


def _autocast(model, precision: str):
    if precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16)


def encode_sorted(
    model,
    texts: list[str],
    batch_size: int,
    cache_dir: str | Path | None = None,
    name: str = "encoder",
    precision: str = "no",
) -> np.ndarray:
    """One pooled vector per text, rows in input order, under `torch.inference_mode`. Without a cache, all
    texts are embedded in order of length; with `cache_dir`, in windows of `CHUNK` consecutive texts (each
    embedded in order of length), each saved as `<cache_dir>/<sha1>.npy` and read back when the same model
    meets the same window again: a corpus and any prefix of it (the probes' first N training texts, the
    texts mined for `objectives.neighbour`) share their windows. `precision` "bf16": matrix products under
    bf16 autocast (vectors returned as float32; cached under their own keys)."""
    if precision not in ("no", "bf16"):
        raise ValueError(f"precision: expected 'no' or 'bf16', found {precision!r}")
    fingerprint = model_fingerprint(model) if cache_dir is not None else ""
    if precision != "no":
        fingerprint += f"|{precision}"
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    size = CHUNK if cache_dir is not None else max(1, len(texts))
    blocks, hits = [], 0
    for start in range(0, len(texts), size):
        window = texts[start : start + size]
        path = Path(cache_dir) / f"{_chunk_key(fingerprint, window)}.npy" if cache_dir is not None else None
        if path is not None and path.is_file():
            blocks.append(np.load(path))
            hits += 1
            continue
        order = np.argsort([len(t) for t in window], kind="stable")
        with torch.inference_mode(), _autocast(model, precision):
            embedded = encode(model, [window[i] for i in order], batch_size)
        block = np.empty_like(embedded)
        block[order] = embedded
        if path is not None:
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, block)
            tmp.replace(path)
            log.info("%s: embedded texts %d-%d of %d (cached)", name, start + 1, start + len(window), len(texts))
        blocks.append(block)
    if hits:
        log.info("%s: %d of %d chunks read from the feature cache %s", name, hits, len(blocks), cache_dir)
    if not blocks:
        raise ValueError("encode got no texts (0 examples)")
    return np.concatenate(blocks, axis=0)
