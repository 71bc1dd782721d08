"""Video sources behind one interface: decord files, a PyAV fallback, and JPEG/PNG frame folders.

    with open_video("clip.mp4", size=(120, 214)) as video:      # (height, width) at decode; None keeps it
        frames = video.get_batch(video.sample_indices(stride=2))  # uint8 (N, H, W, 3) RGB

A corrupt, truncated, zero-byte or non-video file raises `VideoReadError` naming the file and the
reason, never a raw decoder traceback; readers are closed by `close()` / the `with` block.
`read_videos(paths, on_error="skip")` skips such files and reports how many and which.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger("ssl_modal")

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"}
FRAME_SUFFIXES = {".jpg", ".jpeg", ".png"}
_NUMBER = re.compile(r"(\d+)")


class VideoReadError(ValueError):
    """A video or frame folder that cannot be read: names the path, what was expected and what was found."""


def _reason(exc: BaseException) -> str:
    """The useful line of a decoder error (decord prefixes its C++ source locations)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", text)
    return text[:240]


class VideoSource:
    """Frames of one video: `len()`, `fps`, `get_batch(indices)` -> uint8 (N, H, W, 3) RGB, `close()`."""

    path: Path
    fps: float
    backend: str = ""

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, indices: Sequence[int]) -> list[int]:
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} outside 0..{len(self) - 1}")
        return idx

    def sample_indices(
        self, stride: int = 1, fps: float | None = None, start: int = 0, num_frames: int | None = None
    ) -> list[int]:
        """Every `stride`-th frame, or frames resampled to `fps` (nearest earlier frame), from `start`."""
        if fps is not None:
            if fps <= 0:
                raise ValueError(f"{self.path}: fps must be > 0, found {fps}")
            step = self.fps / fps
            idx = [int(start + k * step) for k in range(int((len(self) - start) / step + 1e-9))]
            idx = [i for i in idx if i < len(self)]
        else:
            if stride < 1:
                raise ValueError(f"{self.path}: stride must be >= 1, found {stride}")
            idx = list(range(start, len(self), stride))
        return idx[:num_frames] if num_frames is not None else idx

    def read_all(self, stride: int = 1, fps: float | None = None) -> np.ndarray:
        return self.get_batch(self.sample_indices(stride, fps))


def _resize(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    h, w = size
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


class DecordVideo(VideoSource):
    """decord.VideoReader, resized at decode; decoder failures become VideoReadError."""

    backend = "decord"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
        import decord

        self.path, self.size = Path(path), size
        kwargs = {"num_threads": num_threads}
        if size is not None:
            kwargs.update(height=int(size[0]), width=int(size[1]))
        try:
            self._vr = decord.VideoReader(str(self.path), **kwargs)
            self._len, self.fps = len(self._vr), float(self._vr.get_avg_fps())
        except Exception as exc:  # decord raises DECORDError / RuntimeError with C++ context
            raise VideoReadError(f"{self.path}: decord cannot open it as a video ({_reason(exc)})") from None
        if self._len == 0:
            self.close()
            raise VideoReadError(f"{self.path}: expected video frames, found none")

    def __len__(self) -> int:
        return self._len

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check(indices)
        if self._vr is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        try:
            return self._vr.get_batch(idx).asnumpy()
        except Exception as exc:
            raise VideoReadError(
                f"{self.path}: decoding frames {idx[0]}..{idx[-1]} failed: corrupt or truncated video ({_reason(exc)})"
            ) from None

    def close(self) -> None:
        self._vr = None  # decord frees its decoder when the reader is released


class PyAVVideo(VideoSource):
    """A PyAV reader with the same interface (decodes sequentially once, keeps the frames it needs).

    The rotation flag of the stream is applied, as decord does."""

    backend = "pyav"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None):
        import av

        self.path, self.size = Path(path), size
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise VideoReadError(f"{self.path}: expected a video stream, found none")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.base_rate or 0
                self.fps = float(rate) if rate else 0.0
                self._len = stream.frames or sum(1 for _ in container.demux(stream) if _.size)
        except VideoReadError:
            raise
        except Exception as exc:
            raise VideoReadError(f"{self.path}: PyAV cannot open it as a video ({_reason(exc)})") from None
        if self._len == 0:
            raise VideoReadError(f"{self.path}: expected video frames, found none")

    def __len__(self) -> int:
        return self._len

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        import av

        idx = self._check(indices)
        wanted, out, n = set(idx), {}, 0
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    if n in wanted:
                        arr = frame.to_ndarray(format="rgb24")
                        if getattr(frame, "rotation", 0):
                            arr = np.ascontiguousarray(np.rot90(arr, k=frame.rotation // 90))
                        out[n] = arr
                    n += 1
                    if n > max(idx):
                        break
        except Exception as exc:
            raise VideoReadError(
                f"{self.path}: decoding failed after {n} frames: corrupt or truncated video ({_reason(exc)})"
            ) from None
        missing = [i for i in idx if i not in out]
        if missing:
            raise VideoReadError(
                f"{self.path}: expected {self._len} frames, the stream ended after {n} "
                f"(missing frames {missing[:5]}): truncated video"
            )
        return _resize(np.stack([out[i] for i in idx]), self.size)


def _frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in _NUMBER.split(p.stem)])


class FrameFolder(VideoSource):
    """A folder of numbered JPEG/PNG frames (00000.jpg ...). Gaps in the numbering are an error."""

    backend = "frames"

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, fps: float = 24.0):
        self.path, self.size, self.fps = Path(path), size, float(fps)
        self.files = _frame_files(self.path)
        if not self.files:
            raise VideoReadError(
                f"{self.path}: expected numbered {'/'.join(sorted(FRAME_SUFFIXES))} frames, found none"
            )
        numbers = [int(m.group(1)) if (m := _NUMBER.search(p.stem)) else None for p in self.files]
        if None not in numbers:
            missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
            if missing:
                raise VideoReadError(
                    f"{self.path}: frame numbering has gaps: missing frame(s) "
                    f"{missing[:5]} between {self.files[0].name} and {self.files[-1].name}"
                )

    def __len__(self) -> int:
        return len(self.files)

    def read_frame(self, i: int) -> np.ndarray:
        path = self.files[i]
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise VideoReadError(
                f"{path}: frame {i} of {self.path} cannot be decoded as an image ({_reason(exc)})"
            ) from None
        return arr

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        frames = [self.read_frame(i) for i in self._check(indices)]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VideoReadError(f"{self.path}: frames differ in size ({sorted(shapes)[:3]})")
        return _resize(np.stack(frames), self.size)


def open_video(path: str | Path, size: tuple[int, int] | None = None, backend: str = "auto") -> VideoSource:
    """A frame folder, or a video file read with decord (PyAV when decord cannot open it).

    backend: "auto" | "decord" | "pyav". `size` = (height, width) to resize to at decode.
    """
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend: expected 'auto', 'decord' or 'pyav', found '{backend}'")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    if path.is_dir():
        return FrameFolder(path, size)
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: the file is empty (0 bytes), expected a video")
    if path.suffix.lower() not in VIDEO_SUFFIXES and backend == "auto":
        head = path.read_bytes()[:12]
        if b"ftyp" not in head and not head.startswith(b"\x1a\x45\xdf\xa3"):  # not MP4/MOV, not Matroska
            raise VideoReadError(
                f"{path}: not a video (expected one of {', '.join(sorted(VIDEO_SUFFIXES))} "
                f"or a frame folder, found a '{path.suffix or 'no-suffix'}' file)"
            )
    if backend == "pyav" or (backend == "auto" and importlib.util.find_spec("decord") is None):
        return PyAVVideo(path, size)  # decord has no wheels for some platforms (e.g. macOS arm64)
    try:
        return DecordVideo(path, size)
    except VideoReadError as first:
        if backend == "decord":
            raise
        try:
            video = PyAVVideo(path, size)
        except VideoReadError as second:
            raise VideoReadError(f"{first}; PyAV fallback failed too ({str(second).split(': ', 1)[-1]})") from None
        log.warning("%s: decord failed (%s); reading with PyAV", path, str(first).split(": ", 1)[-1])
        return video


def read_frames(
    path: str | Path, size: tuple[int, int] | None = None, stride: int = 1, backend: str = "auto"
) -> np.ndarray:
    """All frames (every `stride`-th) of a video or frame folder as uint8 (N, H, W, 3); decord errors on
    decode fall back to PyAV in "auto" mode."""
    return _read(path, size, stride, backend)[0]


def _read(path, size, stride: int, backend: str) -> tuple[np.ndarray, float]:
    with open_video(path, size, backend) as video:
        try:
            return video.read_all(stride), video.fps
        except VideoReadError as first:
            if backend != "auto" or not isinstance(video, DecordVideo):
                raise
            try:
                with PyAVVideo(path, size) as fallback:
                    frames = fallback.read_all(stride)
            except VideoReadError as second:
                raise VideoReadError(f"{first}; PyAV fallback: {str(second).split(': ', 1)[-1]}") from None
            log.warning("%s: decord failed to decode; read with PyAV", path)
            return frames, fallback.fps


@dataclass
class ReadReport:
    """Videos read by `read_videos`; `skipped` maps each unreadable path to its error message."""

    videos: dict[str, np.ndarray] = field(default_factory=dict)
    fps: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        frames = sum(len(v) for v in self.videos.values())
        text = f"read {len(self.videos)} videos ({frames} frames)"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} unreadable: " + "; ".join(self.skipped.values())
        return text


def read_videos(
    paths: Sequence[str | Path], size: tuple[int, int] | None = None, stride: int = 1, on_error: str = "error"
) -> ReadReport:
    """Read several videos; unreadable ones raise (`on_error="error"`) or are counted in `skipped`."""
    if on_error not in ("error", "skip"):
        raise ValueError(f"on_error: expected 'error' or 'skip', found '{on_error}'")
    report = ReadReport()
    for path in paths:
        try:
            frames, fps = _read(path, size, stride, "auto")
            report.videos[str(path)], report.fps[str(path)] = frames, fps / stride
        except VideoReadError as exc:
            if on_error == "error":
                raise
            report.skipped[str(path)] = str(exc)
            log.warning("skipping %s", exc)
    return report


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A DAVIS object mask (0/255 greyscale or palette PNG) as bool (H, W); `shape` must match its frame."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            arr = np.asarray(img if img.mode in ("L", "P", "1") else img.convert("L"))
    except FileNotFoundError:
        raise FileNotFoundError(f"mask not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise VideoReadError(f"{path}: cannot be decoded as a mask image ({_reason(exc)})") from None
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise VideoReadError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} (WxH) but its frame is "
            f"{shape[1]}x{shape[0]}; masks must have the frame's size"
        )
    return arr > 127 if arr.max() >= 128 else arr > 0  # 0/255 masks, or palette/0-1 class indices
