"""Tiny generated videos (written with PyAV) and frame folders, so the video tests run without shared data."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_VIDEO = REPO.parent / "shared" / "data" / "video"
EDGE = SHARED_VIDEO / "edge_cases"
EXAMPLES = REPO / "examples" / "data" / "video"


def synthetic_frames(n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """A coloured square moving right on a background whose brightness encodes the frame index (10 * i)."""
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = 10 * i
        x = 4 + 2 * i
        frames[i, 16:32, x : x + 16] = [220, 40, 40]
    return frames


def square_masks(n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        masks[i, 16:32, 4 + 2 * i : 20 + 2 * i] = True
    return masks


def write_video(path: Path, frames: np.ndarray, fps: int = 24) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "10", "g": "4"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_sequence(root: Path, name: str, frames: np.ndarray, masks: np.ndarray) -> Path:
    """A DAVIS-layout sequence: JPEGImages/<name>/00000.jpg and Annotations/<name>/00000.png (0/255)."""
    (root / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / name).mkdir(parents=True, exist_ok=True)
    for i, (f, m) in enumerate(zip(frames, masks, strict=True)):
        Image.fromarray(f).save(root / "JPEGImages" / name / f"{i:05d}.jpg", quality=95)
        Image.fromarray((m * 255).astype(np.uint8)).save(root / "Annotations" / name / f"{i:05d}.png")
    return root / "JPEGImages" / name


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "square.mp4", synthetic_frames())


@pytest.fixture
def tiny_davis(tmp_path) -> Path:
    write_sequence(tmp_path / "davis", "square", synthetic_frames(), square_masks())
    return tmp_path / "davis"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (shared data)")
    return path
