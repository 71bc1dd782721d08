"""DAVIS sequences (JPEG frames + object masks) and the DAVIS region (J) and contour (F) measures.

J is the IoU of predicted and ground-truth masks; F is the boundary F-measure of the DAVIS benchmark
(Perazzi et al. 2016): boundaries by `seg2bmap`, matched within a disk of radius
ceil(bound_th * image diagonal) with bound_th = 0.008. As in the official evaluation, the first frame
(given) and the last frame are left out of the per-sequence means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from ssl_modal.video.io import FrameFolder, VideoReadError, read_mask


@dataclass
class Sequence:
    """One annotated sequence: frames uint8 (T, H, W, 3) and masks bool (T, H, W)."""

    name: str
    frames: np.ndarray
    masks: np.ndarray


def load_sequence(root: str | Path, name: str, max_frames: int | None = None) -> Sequence:
    """`<root>/JPEGImages/<name>/*.jpg` with `<root>/Annotations/<name>/*.png` (one mask per frame)."""
    root = Path(root)
    folder = FrameFolder(root / "JPEGImages" / name)
    n = len(folder) if max_frames is None else min(len(folder), max_frames)
    frames = folder.get_batch(range(n))
    mask_dir = root / "Annotations" / name
    masks = []
    for f in folder.files[:n]:
        path = mask_dir / f"{f.stem}.png"
        if not path.is_file():
            raise VideoReadError(f"{path}: expected the mask of frame {f.name}, found no file")
        masks.append(read_mask(path, frames.shape[1:3]))
    return Sequence(name, frames, np.stack(masks))


def list_sequences(root: str | Path) -> list[str]:
    folder = Path(root) / "JPEGImages"
    if not folder.is_dir():
        raise FileNotFoundError(f"DAVIS folder not found: expected {folder}")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def region_j(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index (IoU) of two bool masks; 1.0 when both are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a bool mask (the DAVIS benchmark's seg2bmap at the mask's size)."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """A filled disk structuring element (as skimage.morphology.disk)."""
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def contour_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS boundary F-measure of two bool masks of the same shape."""
    if pred.shape != gt.shape:
        raise ValueError(f"contour_f: prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    bound_pix = bound_th if bound_th >= 1 else int(np.ceil(bound_th * np.linalg.norm(pred.shape)))
    fg, gt_b = seg2bmap(pred), seg2bmap(gt)
    fg_dil = binary_dilation(fg, disk(bound_pix))
    gt_dil = binary_dilation(gt_b, disk(bound_pix))
    n_fg, n_gt = fg.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float((fg & gt_dil).sum() / n_fg)
        recall = float((gt_b & fg_dil).sum() / n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def sequence_scores(preds: np.ndarray, gts: np.ndarray, bound_th: float = 0.008) -> dict:
    """Per-frame J and F of a sequence and their means over frames 1..T-2 (first and last left out)."""
    if preds.shape != gts.shape:
        raise ValueError(f"predicted masks {preds.shape} and ground truth {gts.shape} differ in shape")
    j = [region_j(p, g) for p, g in zip(preds, gts, strict=True)]
    f = [contour_f(p, g, bound_th) for p, g in zip(preds, gts, strict=True)]
    scored = slice(1, len(j) - 1) if len(j) > 2 else slice(0, len(j))
    return {"J_frames": j, "F_frames": f, "J": float(np.mean(j[scored])), "F": float(np.mean(f[scored]))}
