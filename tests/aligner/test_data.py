"""Manifest reading, image decoding and conversion, the split by image: clear errors, nothing dropped."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_modal.aligner.data import image_transform, load_image, read_pairs, split_by_group
from ssl_modal.aligner.tokenizer import count_truncated, load_tokenizer, train_wordpiece
from ssl_modal.data.readers import DataValidationError


def test_reads_groups_and_splits_by_image(shapes):
    pairs = read_pairs(shapes)
    assert len(pairs) == 32 and len(np.unique(pairs.groups)) == 16
    train, test = split_by_group(pairs, 0.25, seed=0)
    assert len(train) + len(test) == len(pairs)
    assert not set(train.groups) & set(test.groups) and len(np.unique(test.groups)) == 4


def test_missing_column_names_columns_found(shapes):
    with pytest.raises(DataValidationError, match="missing column 'captions'; did you mean 'caption'"):
        read_pairs(shapes, caption_column="captions")


def test_empty_caption_names_the_line(shapes):
    frame = pd.read_csv(shapes)
    frame.loc[3, "caption"] = "   "
    frame.to_csv(shapes, index=False)
    with pytest.raises(DataValidationError, match=r"empty caption in column 'caption' at data row 4 \(line 5\)"):
        read_pairs(shapes)


def test_missing_image_file_names_line_and_path(shapes):
    frame = pd.read_csv(shapes)
    frame.loc[0, "image"] = "nope.jpg"
    frame.to_csv(shapes, index=False)
    with pytest.raises(DataValidationError, match=r"1 image file\(s\) not found \(data row 1 \(line 2\): .*nope.jpg"):
        read_pairs(shapes)


def test_undecodable_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataValidationError, match="broken.jpg: cannot decode image"):
        load_image(bad)
    with pytest.raises(DataValidationError, match="image not found"):
        load_image(tmp_path / "absent.png")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_other_colour_modes_are_converted_to_rgb(tmp_path, mode):
    rgb = Image.fromarray(np.full((20, 30, 3), (200, 40, 40), dtype=np.uint8))
    image = rgb.convert("RGBA") if mode == "RGBA" else rgb.convert(mode) if mode != "I;16" else rgb.convert("I;16")
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (30, 20)
    assert image_transform(16, train=True)(loaded).shape == (3, 16, 16)


def test_transparent_pixels_become_white(tmp_path):
    pixels = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    Image.fromarray(pixels, "RGBA").save(tmp_path / "t.png")
    assert np.asarray(load_image(tmp_path / "t.png")).min() == 255


def test_long_captions_are_truncated_and_counted(caplog):
    tokenizer = load_tokenizer({"pretrained_path": None}, train_wordpiece(["a dog runs on the grass"] * 5, 60))
    captions = ["a dog", "a dog runs on the grass a dog runs on the grass"]
    assert count_truncated(tokenizer, captions, max_length=6, source="m.csv") == 1
    assert "m.csv: 1 of 2 captions are longer than text.max_length=6 tokens" in caplog.text


def test_schema_example_is_a_readable_manifest():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "data_schemas" / "examples" / "image_text.csv"
    pairs = read_pairs(example)
    assert len(pairs) == 6 and load_image(pairs.paths[0]).mode == "RGB"


def test_pairs_from_a_datasets_dataset(shapes):
    import datasets

    frame = pd.read_csv(shapes)
    frame["image"] = [str(shapes.parent / name) for name in frame["image"]]
    pairs = read_pairs(datasets.Dataset.from_pandas(frame))
    assert len(pairs) == 32 and len(np.unique(pairs.groups)) == 16
    with pytest.raises(DataValidationError, match="missing column 'text'"):
        read_pairs(frame, caption_column="text")


def test_undecodable_image_during_training_names_the_manifest_line(shapes):
    from ssl_modal.aligner.data import PairDataset

    (shapes.parent / "img003.png").write_bytes(b"not a png")
    pairs = read_pairs(shapes)
    dataset = PairDataset(pairs, image_transform(16, train=False))
    with pytest.raises(
        DataValidationError, match=r"captions.csv, data row 7 \(line 8\): .*img003.png: cannot decode image"
    ):
        dataset[6]


def test_test_fraction_zero_holds_out_nothing_and_bad_fractions_are_errors(shapes):
    pairs = read_pairs(shapes)
    train, test = split_by_group(pairs, 0.0, seed=0)
    assert len(train) == len(pairs) and len(test) == 0
    with pytest.raises(ValueError, match="data.test_fraction: expected 0 <= fraction < 1, found 1.0"):
        split_by_group(pairs, 1.0, seed=0)
    with pytest.raises(ValueError, match="holds out 0: expected at least one image on each side"):
        split_by_group(pairs, 0.01, seed=0)


def test_every_image_is_checked_before_the_first_step(shapes, tmp_path):
    from ssl_modal.aligner.recipe import train

    from .conftest import tiny_config

    good = (shapes.parent / "img005.png").read_bytes()
    (shapes.parent / "img005.png").write_bytes(good[: len(good) // 2])  # truncated: the header still reads
    (shapes.parent / "img009.png").write_bytes(b"not a png")
    cfg = tiny_config(shapes, tmp_path / "run")
    cfg.data.test_fraction = 0.0
    with pytest.raises(DataValidationError) as err:
        train(cfg)
    message = str(err.value)
    assert "captions.csv: 2 of 16 image(s) cannot be decoded" in message
    assert "data row 11 (line 12): " in message and "img005.png" in message
    assert "data row 19 (line 20): " in message and "img009.png" in message
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("augment", ["none", "trivial", "randaugment"])
def test_strong_augmentation_keeps_the_shape_and_changes_pixels(shapes, augment):
    import torch

    image = load_image(read_pairs(shapes).paths[0])
    transform = image_transform(24, train=True, crop_scale=(0.3, 1.0), flip=True, augment=augment, color_jitter=0.4)
    torch.manual_seed(0)
    views = [transform(image) for _ in range(2)]
    assert views[0].shape == (3, 24, 24) and not torch.equal(views[0], views[1])
    with pytest.raises(ValueError, match="data.augment: expected 'none', 'trivial' or 'randaugment', found 'auto'"):
        image_transform(24, train=True, augment="auto")


def test_by_image_items_carry_every_caption_and_cache_decodes_once(shapes):
    from ssl_modal.aligner.data import PairDataset

    pairs = read_pairs(shapes)
    dataset = PairDataset(pairs, image_transform(16, train=False), by_image=True, cache=True)
    assert len(dataset) == 16
    item = dataset[3]
    assert item["captions"] == [c for c, g in zip(pairs.captions, pairs.groups, strict=True) if g == item["group"]]
    assert len(item["captions"]) == 2 and len(dataset.cache) == 1
    dataset[3]
    assert len(dataset.cache) == 1
