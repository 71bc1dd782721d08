"""The patch-dictionary tower's conv head and its cached augmented views."""

import dataclasses

import pytest
import torch

from ssl_modal.aligner.data import image_transform, load_image, read_pairs
from ssl_modal.aligner.evaluate import encode_images
from ssl_modal.aligner.patches import PatchTower, pick_views, random_windows
from ssl_modal.aligner.recipe import fit_patch_front, read_split, train
from ssl_modal.core.export import load_model

from .conftest import tiny_config
from .test_model import tiny_model

TOWER = {"patch_size": 6, "centroids": 8, "grid": 5, "width": 16, "dropout": 0.0}


def patch_config(shapes, tmp_path, **image):
    cfg = tiny_config(shapes, tmp_path / "run")
    cfg.model.image = dataclasses.replace(cfg.model.image, arch="patches", **{**TOWER, **image})
    return cfg


def test_conv_head_maps_a_window_to_its_last_width_and_trains():
    tower = PatchTower({**TOWER, "head": "conv", "head_widths": [12, 20]})
    assert tower.width == 20
    maps = torch.rand(4, 8, 5, 5)
    out = tower.head(maps)
    assert out.shape == (4, 20)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in tower.head_conv.parameters())
    assert not hasattr(tower, "head_mlp")
    with pytest.raises(ValueError, match="model.image.head: expected 'mlp' or 'conv', found 'gru'"):
        PatchTower({**TOWER, "head": "gru"})
    with pytest.raises(ValueError, match="head_widths: expected at least one width"):
        PatchTower({**TOWER, "head": "conv", "head_widths": []})


def test_pick_views_draws_one_cached_view_per_row():
    maps = torch.arange(6 * 3, dtype=torch.float32).reshape(6, 3, 1, 1, 1).expand(6, 3, 2, 4, 4).clone()
    picked = pick_views(maps, torch.Generator().manual_seed(0))
    assert picked.shape == (6, 2, 4, 4)
    views = [int(picked[i, 0, 0, 0]) - 3 * i for i in range(6)]
    assert all(0 <= v < 3 for v in views) and len(set(views)) > 1  # each row one of its own views, not all view 0
    flat = maps[:, 0]
    assert pick_views(flat, torch.Generator()) is flat
    assert random_windows(maps, torch.Generator().manual_seed(0)).shape == (6, 2, 4, 4)


def test_cached_views_are_the_plain_image_then_augmented_draws(shapes, tmp_path):
    cfg = patch_config(shapes, tmp_path)
    cfg.data = dataclasses.replace(cfg.data, cached_views=3, horizontal_flip=True, random_resized_crop=(0.3, 0.6))
    model = tiny_model(cfg)
    pairs, _ = read_split(cfg)
    augment = image_transform(32, train=True, crop_scale=(0.3, 0.6), flip=True)
    torch.manual_seed(0)
    maps = fit_patch_front(model, pairs, cfg, augment)
    first = next(iter(maps.values()))
    assert first.shape == (3, 8, 5, 5)
    plain = image_transform(32, train=False)
    path = next(iter(maps))
    torch.testing.assert_close(first[0], model.encoder.image_tower.front(plain(load_image(path))[None])[0])
    assert not torch.allclose(first[1], first[0]) and not torch.allclose(first[2], first[1])
    with pytest.raises(ValueError, match="cached_views > 1 needs the training transform"):
        fit_patch_front(model, pairs, cfg)
    encoded = model.encoder({"image_maps": torch.stack(list(maps.values())[:2])}).pooled  # 5-D maps: view 0
    expected = model.encoder({"image_maps": torch.stack([m[0] for m in list(maps.values())[:2]])}).pooled
    torch.testing.assert_close(encoded, expected)


def test_conv_head_with_cached_views_trains_saves_and_encodes(shapes, tmp_path):
    cfg = patch_config(shapes, tmp_path, head="conv", head_widths=[8, 16])
    cfg.data = dataclasses.replace(cfg.data, cached_views=2, sample_captions=True)
    cfg.train = dataclasses.replace(cfg.train, max_steps=3)
    result = train(cfg)
    again = load_model(result.checkpoint)
    assert again.encoder.image_tower.kind == "conv" and again.encoder.image_proj.in_features == 16
    paths = read_pairs(shapes).paths[:3]
    assert encode_images(again, paths).shape == (3, cfg.model.embed_dim)
