"""Training clips from decoded videos, the colour centres fitted on them, and windows for clip-embedding export."""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ssl_modal.video.colorize import fit_color_centres, frames_to_lab
from ssl_modal.video.config import ColorizationConfig, FrameOrderConfig, WalkConfig
from ssl_modal.video.io import FRAME_SUFFIXES, VIDEO_SUFFIXES, ReadReport, read_videos

log = logging.getLogger("ssl_modal")


def read_manifest(path: str | Path) -> list[dict]:
    """Records of a JSONL video manifest (data_schemas/video_manifest.schema.json), paths made absolute."""
    from ssl_modal.data.validate import validate

    path = Path(path)
    validate("video_manifest", path).raise_if_failed()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{**r, "path": str((path.parent / r["path"]).resolve())} for r in records]


def folder_videos(folder: Path) -> tuple[list[str], list[str]]:
    """(videos, ignored names) of a folder: itself when it holds frames, else its video files and frame folders."""
    entries = sorted(folder.iterdir())
    frames = [p for p in entries if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    if frames and not videos:
        return [str(folder)], []
    subfolders = [p for p in entries if p.is_dir() and any(q.suffix.lower() in FRAME_SUFFIXES for q in p.iterdir())]
    chosen = sorted(videos + subfolders)
    ignored = [p.name for p in entries if p not in chosen and not p.name.startswith(".")]
    if not chosen:
        raise FileNotFoundError(
            f"{folder}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) or frame folders "
            f"found{' (found only: ' + ', '.join(ignored[:5]) + ')' if ignored else ''}"
        )
    return [str(p) for p in chosen], ignored


def resolve_videos(patterns: list[str]) -> tuple[list[Path], dict[str, dict]]:
    """Files or frame folders named by paths, glob patterns or .jsonl manifests (with each manifest record by
    path); a pattern that matches nothing is an error."""
    found: list[Path] = []
    records: dict[str, dict] = {}
    for pattern in patterns:
        if pattern.endswith(".jsonl"):
            for record in read_manifest(pattern):
                records[record["path"]] = record
            matches = [Path(p) for p in records]
        else:
            matches = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
            matches = [Path(m) for m in matches if Path(m).exists()]
            if len(matches) == 1 and matches[0].is_dir():  # a folder of videos, or one frame folder
                names, ignored = folder_videos(matches[0])
                matches = [Path(n) for n in names]
                if ignored:
                    log.info(
                        "%s: ignored %d entries that are not videos (%s)", pattern, len(ignored), ", ".join(ignored[:5])
                    )
        if not matches:
            raise FileNotFoundError(f"no video matches '{pattern}' (expected video files or frame folders)")
        found += [m for m in matches if m not in found]
    return found, records


def load_videos(patterns: list[str], size: list[int] | None, on_error: str = "skip") -> ReadReport:
    """Decode every video (resized to `size` = [height, width]); unreadable ones are skipped and counted.
    A manifest's `num_frames` is checked and its `fps` used for frame folders."""
    paths, records = resolve_videos(patterns)
    report = read_videos(paths, tuple(size) if size else None, on_error=on_error)
    for path, record in records.items():
        if path not in report.videos:
            continue
        if "num_frames" in record and len(report.videos[path]) != record["num_frames"]:
            raise ValueError(
                f"{path}: the manifest expects {record['num_frames']} frames, found {len(report.videos[path])}"
            )
        report.fps[path] = float(record.get("fps", report.fps[path]))
    if not report.videos:
        raise ValueError(f"none of the training videos could be read: {report}")
    log.info("%s", report)
    return report


def color_span(cfg: ColorizationConfig) -> int:
    return cfg.num_refs * cfg.frame_gap + 1


def order_span(cfg: FrameOrderConfig) -> int:
    return cfg.num_clips * cfg.clip_len + (cfg.num_clips - 1) * cfg.gap


class ClipDataset(torch.utils.data.Dataset):
    """Every start position of every video. Item: {"frames": num_refs+1 frames `frame_gap` apart (the
    colorization clip)} plus, with frame order, {"order_frames": num_clips clips of clip_len frames, `gap`
    frames apart, in their true order} (the objective shuffles them)."""

    def __init__(self, videos: dict[str, np.ndarray], color: ColorizationConfig, order: FrameOrderConfig | None = None):
        self.videos, self.color, self.order = videos, color, order
        need = {"colorization": color_span(color)}
        if order is not None:
            need["frame order"] = order_span(order)
        span = max(need.values())
        self.index: list[tuple[str, int]] = []
        for name, frames in videos.items():
            if len(frames) < span:
                what = max(need, key=need.get)
                detail = (
                    f"{order.num_clips} clips x {order.clip_len} frames with gap {order.gap}"
                    if what == "frame order"
                    else f"{color.num_refs} references + 1 target, gap {color.frame_gap}"
                )
                raise ValueError(
                    f"{name}: the sequence has {len(frames)} frames, but {what} ({detail}) needs at "
                    f"least {span}; lower the gaps or drop this video"
                )
            self.index += [(name, s) for s in range(len(frames) - span + 1)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        name, start = self.index[i]
        frames = self.videos[name]
        item = {"frames": frames[start : start + color_span(self.color) : self.color.frame_gap]}
        if self.order is not None:
            o = self.order
            idx = [start + k * (o.clip_len + o.gap) + j for k in range(o.num_clips) for j in range(o.clip_len)]
            item["order_frames"] = frames[idx]
        return item


def load_images(patterns: list[str], size: list[int]) -> list[np.ndarray]:
    """Still images (files or glob patterns) as uint8 (height, width, 3) arrays resized to `size`; an image that
    fails to decode is an error naming it."""
    from PIL import Image

    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise FileNotFoundError(f"no image matches '{pattern}' (data.train_images)")
        paths += matches
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)))
        except OSError as e:
            raise ValueError(f"{p}: cannot be decoded as an image ({e})") from e
    return out


class WalkClips(torch.utils.data.Dataset):
    """Random-walk clips: every start of `clip_len` frames `frame_gap` apart in each video, then every still
    image as `clip_len` copies (the objective's per-frame crop jitter makes them move). Item: {"frames"}."""

    def __init__(self, videos: dict[str, np.ndarray], images: list[np.ndarray], cfg: WalkConfig):
        self.videos, self.images, self.cfg = videos, images, cfg
        span = (cfg.clip_len - 1) * cfg.frame_gap + 1
        self.index: list[tuple[str, int]] = []
        for name, frames in videos.items():
            if len(frames) < span:
                raise ValueError(
                    f"{name}: the sequence has {len(frames)} frames, but the random walk "
                    f"({cfg.clip_len} frames, gap {cfg.frame_gap}) needs at least {span}"
                )
            self.index += [(name, s) for s in range(len(frames) - span + 1)]
        self.index += [("", i) for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        name, start = self.index[i]
        if not name:
            return {"frames": np.repeat(self.images[start][None], self.cfg.clip_len, axis=0)}
        span = (self.cfg.clip_len - 1) * self.cfg.frame_gap + 1
        return {"frames": self.videos[name][start : start + span : self.cfg.frame_gap]}


def sample_ab(
    videos: dict[str, np.ndarray], num_frames: int, seed: int = 0, pixels_per_frame: int = 2000
) -> np.ndarray:
    """ab values of random pixels from `num_frames` frames spread evenly over all training frames: (N, 2)."""
    flat = [(name, i) for name, frames in videos.items() for i in range(len(frames))]
    picks = np.linspace(0, len(flat) - 1, min(num_frames, len(flat))).round().astype(int)
    rng = np.random.default_rng(seed)
    out = []
    for p in picks:
        name, i = flat[p]
        ab = frames_to_lab(torch.as_tensor(videos[name][i]))[1:].flatten(1).T.numpy()
        out.append(ab[rng.choice(len(ab), min(pixels_per_frame, len(ab)), replace=False)])
    return np.concatenate(out)


def fit_centres(videos: dict[str, np.ndarray], cfg: ColorizationConfig) -> list[list[float]]:
    """k-means colour centres (num_colors x 2) as a plain list, ready for the model config."""
    centres = fit_color_centres(sample_ab(videos, cfg.kmeans_frames, cfg.seed), cfg.num_colors, cfg.seed)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in centres]


class ClipWindows(torch.utils.data.Dataset):
    """Windows of `window` frames every `stride` frames per video, for clip-embedding export.
    `meta[i]` = {"video", "start_frame", "start_s", "end_s"}; a video shorter than a window gives one window,
    padded by repeating its last frame."""

    def __init__(self, videos: dict[str, np.ndarray], fps: dict[str, float], window: int, stride: int):
        self.videos, self.window, self.items, self.meta = videos, window, [], []
        for name, frames in videos.items():
            n = len(frames)
            starts = list(range(0, max(1, n - window + 1), stride))
            rate = fps.get(name) or 24.0
            for s in starts:
                e = min(n, s + window)
                self.items.append((name, s, e))
                self.meta.append(
                    {
                        "video": Path(name).name,
                        "start_frame": s,
                        "start_s": round(s / rate, 3),
                        "end_s": round(e / rate, 3),
                    }
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        name, s, _ = self.items[i]
        frames = self.videos[name]
        return {"frames": frames[[min(j, len(frames) - 1) for j in range(s, s + self.window)]]}
