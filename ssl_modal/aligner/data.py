"""Image-caption pairs: manifest reading with clear errors, PIL decoding, torchvision v2 transforms."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_modal.data.readers import DataValidationError, missing_columns_message, read_table

log = logging.getLogger(__name__)
MEAN, STD = (0.481, 0.458, 0.408), (0.269, 0.261, 0.276)  # CLIP's RGB statistics


@dataclass
class Pairs:
    """Validated image-caption pairs: absolute image paths, captions, integer group ids (one per image)."""

    paths: list[str]
    captions: list[str]
    groups: np.ndarray
    source: str = ""
    lines: np.ndarray | None = None  # line of each pair in the manifest file (header = line 1)

    def __len__(self) -> int:
        return len(self.captions)

    def select(self, idx) -> Pairs:
        idx = np.asarray(idx, dtype=np.int64)
        lines = None if self.lines is None else self.lines[idx]
        return Pairs(
            [self.paths[i] for i in idx], [self.captions[i] for i in idx], self.groups[idx], self.source, lines
        )

    def frame(self) -> pd.DataFrame:
        """The pairs as a DataFrame (columns image_path, caption, group) for `encode`/`export`."""
        return pd.DataFrame({"image_path": self.paths, "caption": self.captions, "group": self.groups})


def row_label(source, line: int) -> str:
    """'data row N (line N+1)': the 1-based data row (first row after the header = 1), plus the file line for
    text manifests (CSV/TSV); Parquet has rows only."""
    row = int(line) - 1
    return f"data row {row}" if str(source).endswith(".parquet") else f"data row {row} (line {int(line)})"


def read_pairs(
    manifest,
    image_column: str = "image",
    caption_column: str = "caption",
    group_column: str | None = "image",
    image_root: str | Path | None = None,
    max_groups: int | None = None,
) -> Pairs:
    """Read and check pairs: every named column present, no empty caption, every image file present.

    `manifest`: a CSV/Parquet/JSONL path, a pandas DataFrame or a `datasets.Dataset` (relative image paths are
    then relative to `image_root`, default the working directory).
    """
    wanted = list(dict.fromkeys(c for c in (image_column, caption_column, group_column) if c))
    if isinstance(manifest, (str, Path)):
        manifest = Path(manifest)
        frame = read_table(manifest, columns=wanted)
    else:
        frame = manifest.to_pandas() if hasattr(manifest, "to_pandas") else pd.DataFrame(manifest)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataValidationError(missing_columns_message("pairs", missing, list(frame.columns)))
        if frame.empty:
            raise DataValidationError("pairs: no image-caption pairs (0 rows)")
        manifest = Path(type(manifest).__name__)
    captions = frame[caption_column]
    empty = captions.isna() | (captions.astype(str).str.strip() == "")
    if empty.any():
        lines = (np.flatnonzero(empty.to_numpy()) + 2).tolist()  # +2: 1-based and the header line
        listed = ", ".join(row_label(manifest, line) for line in lines[:10])
        raise DataValidationError(
            f"{manifest}: empty caption in column '{caption_column}' at {listed}"
            f"{' ...' if len(lines) > 10 else ''}: expected non-empty text"
        )
    root = Path(image_root) if image_root else (manifest.parent if manifest.suffix else Path("."))
    paths = [str(p if p.is_absolute() else root / p) for p in map(Path, frame[image_column].astype(str))]
    absent = [(i + 2, p) for i, p in enumerate(paths) if not Path(p).is_file()]
    if absent:
        listed = ", ".join(f"{row_label(manifest, line)}: {p}" for line, p in absent[:5])
        raise DataValidationError(
            f"{manifest}: {len(absent)} image file(s) not found ({listed}"
            f"{' ...' if len(absent) > 5 else ''}); column '{image_column}' is read "
            f"relative to {root}"
        )
    keys = frame[group_column] if group_column else pd.Series(np.arange(len(frame)))
    groups = pd.factorize(keys)[0].astype(np.int64)
    pairs = Pairs(paths, captions.astype(str).str.strip().tolist(), groups, str(manifest), np.arange(len(frame)) + 2)
    if max_groups is not None:
        pairs = pairs.select(np.flatnonzero(groups < max_groups))
    return pairs


def split_by_group(pairs: Pairs, test_fraction: float, seed: int) -> tuple[Pairs, Pairs]:
    """(train, test): whole groups (images) go to one side, never split across. 0 holds out nothing."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"data.test_fraction: expected 0 <= fraction < 1, found {test_fraction}")
    unique = np.unique(pairs.groups)
    rng = np.random.default_rng(seed)
    n_test = int(round(len(unique) * test_fraction))
    if test_fraction > 0 and not 0 < n_test < len(unique):
        raise ValueError(
            f"data.test_fraction={test_fraction} of {len(unique)} images holds out {n_test}: expected "
            f"at least one image on each side"
        )
    test_groups = rng.choice(unique, size=n_test, replace=False)
    is_test = np.isin(pairs.groups, test_groups)
    return pairs.select(np.flatnonzero(~is_test)), pairs.select(np.flatnonzero(is_test))


def load_image(path: str | Path):
    """An RGB PIL image; grayscale, palette, RGBA and CMYK files are converted (alpha over white)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, im).convert("RGB")
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except FileNotFoundError:
        raise DataValidationError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataValidationError(f"{path}: cannot decode image ({exc}); expected a JPEG/PNG/... file") from None


def check_images(pairs: Pairs) -> None:
    """Decode every distinct image once, fast (JPEG at 1/8 scale), before any training step.

    Raises one DataValidationError listing the undecodable files with their manifest lines.
    """
    from PIL import Image

    bad, seen = [], set()
    for i, path in enumerate(pairs.paths):
        if path in seen:
            continue
        seen.add(path)
        try:
            with Image.open(path) as im:
                im.draft("RGB", (32, 32))
                im.load()
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the user's file
            line = pairs.lines[i] if pairs.lines is not None else i + 2
            bad.append(f"{row_label(pairs.source, line)}: {path} ({type(exc).__name__}: {exc})")
    if bad:
        raise DataValidationError(
            f"{pairs.source}: {len(bad)} of {len(seen)} image(s) cannot be decoded, expected "
            f"JPEG/PNG/... files: {'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
        )


def image_transform(
    image_size: int,
    train: bool,
    crop_scale=(0.6, 1.0),
    flip: bool = False,
    augment: str = "none",
    color_jitter: float = 0.0,
):
    """torchvision v2: random resized crop (+ flip, colour jitter, TrivialAugment / RandAugment) for training,
    resize + centre crop otherwise."""
    from torchvision.transforms import v2

    if train:
        steps = [v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True)]
        steps += [v2.RandomHorizontalFlip()] if flip else []
        if color_jitter:
            steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, color_jitter / 4))
        if augment == "trivial":
            steps.append(v2.TrivialAugmentWide())
        elif augment == "randaugment":
            steps.append(v2.RandAugment())
        elif augment != "none":
            raise ValueError(f"data.augment: expected 'none', 'trivial' or 'randaugment', found '{augment}'")
    else:
        steps = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.PILToTensor(), *steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class PairDataset(torch.utils.data.Dataset):
    """Items {"pixel_values": (3, H, W), "caption": str, "group": int}, images decoded on access.

    `by_image=True`: one item per image with all its captions ("captions": list[str]); the objective draws one per
    step. `text_features` (one row per pair): precomputed caption features replace the caption strings.
    `cache=True`: decoded images stay in memory. `image_maps` (image path -> tensor): a frozen image front's
    precomputed output replaces the pixels ("image_maps").
    """

    def __init__(
        self,
        pairs: Pairs,
        transform,
        by_image: bool = False,
        text_features: torch.Tensor | None = None,
        cache: bool = False,
        image_maps: dict[str, torch.Tensor] | None = None,
    ):
        self.pairs, self.transform, self.text_features, self.image_maps = pairs, transform, text_features, image_maps
        self.cache = {} if cache else None
        order = np.argsort(pairs.groups, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(pairs.groups[order]) != 0])
        self.items = np.split(order, starts[1:]) if by_image else [np.array([i]) for i in range(len(pairs))]
        self.by_image = by_image

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int):
        path = self.pairs.paths[i]
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        try:
            image = load_image(path)
        except DataValidationError as exc:
            where = (
                f"{self.pairs.source}, {row_label(self.pairs.source, self.pairs.lines[i])}"
                if self.pairs.lines is not None
                else self.pairs.source
            )
            raise DataValidationError(f"{where}: {exc}") from None
        if self.cache is not None:
            self.cache[path] = image
        return image

    def __getitem__(self, k: int) -> dict:
        rows = self.items[k]
        first = int(rows[0])
        item = (
            {"image_maps": self.image_maps[self.pairs.paths[first]]}
            if self.image_maps is not None
            else {"pixel_values": self.transform(self.image(first))}
        )
        item["group"] = int(self.pairs.groups[first])
        if self.text_features is not None:
            item["text_features"] = self.text_features[rows] if self.by_image else self.text_features[rows[0]]
        elif self.by_image:
            item["captions"] = [self.pairs.captions[i] for i in rows]
        else:
            item["caption"] = self.pairs.captions[rows[0]]
        return item


class ImageDataset(torch.utils.data.Dataset):
    """Items {"pixel_values"} of distinct image files (for image embeddings and zero-shot)."""

    def __init__(self, paths: list[str], transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.transform(load_image(self.paths[i]))}
