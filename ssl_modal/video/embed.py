"""`ssl-modal embed` for video models: one embedding per video (the mean over its windows of 8 frames).

Input: a video file, a frame folder, a folder of videos (files that are not videos are left out and counted),
a glob pattern or a .jsonl manifest. Unreadable videos raise naming the file, or with `on_error="skip"` are
left out and counted. Frames are resized to the model's training size (data.size; default 128 x 224).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_modal.core.export import encode
from ssl_modal.data.embed_input import EmbedInput, check_on_error
from ssl_modal.video.data import ClipWindows, folder_videos, resolve_videos
from ssl_modal.video.io import read_videos

WINDOW, STRIDE, SIZE = 8, 8, (128, 224)


def embed_input(
    model,
    path: str | Path,
    *,
    column: str | None = None,
    id_column: str | None = None,
    on_error: str = "error",
    batch_size: int = 16,
    normalize: bool = False,
) -> EmbedInput:
    check_on_error(on_error)
    if column is not None or id_column is not None:
        raise ValueError(
            "--column / --id-column: a video model embeds whole videos (one row per video, named by "
            "its path); drop them"
        )
    source, ignored = Path(path), []
    if source.is_dir():
        paths, ignored = folder_videos(source)
    else:
        paths = [str(p) for p in resolve_videos([str(path)])[0]]
    size = tuple(model.spec.config.get("size") or SIZE)
    report = read_videos(paths, size, on_error=on_error)
    if not report.videos:
        raise ValueError(f"{path}: no readable video ({report})")
    windows = ClipWindows(report.videos, report.fps, WINDOW, STRIDE)
    emb = encode(model, windows, batch_size=batch_size)
    names = [name for name, _, _ in windows.items]
    order = list(report.videos)
    out = np.stack([emb[[i for i, n in enumerate(names) if n == name]].mean(0) for name in order])
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    ids = {"path": order, "frames": [len(report.videos[n]) for n in order], "windows": [names.count(n) for n in order]}
    note = str(report) + (f"; ignored {len(ignored)} non-video entries ({', '.join(ignored[:5])})" if ignored else "")
    return EmbedInput(ids=ids, embeddings=out.astype(np.float32), note=note)
